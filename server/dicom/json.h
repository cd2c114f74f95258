/*
 * json.h - DICOM JSON Model (PS3.18 Annex F) text from a parsed dataset.
 *
 * Writes the JSON object of a dataset straight into a buffer (no jansson
 * tree: this runs once per stored instance and must be fast). Strings are
 * converted to UTF-8 through the Specific Character Set in force at each
 * level. Binary values loaded in memory become InlineBinary; bulk values
 * (see dcm.h) become a BulkDataURI whose text is
 *   <BASE>/studies/{s}/series/{se}/instances/{i}/bulkdata/<path>
 * where <BASE> is NOT written: its insertion point is recorded in marks, so
 * a reader can put the request's base URL there without parsing the JSON.
 * <path> is the tag path, e.g. "7FE00010" or "00880200/0/7FE00010"
 * (sequence tag, item index, tag...).
 *
 * Group 0002 and group length (gggg,0000) elements are not written.
 */
#ifndef YY_JSON_H
#define YY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct dcm_file;
struct dcm_ds;
struct dcm_elem;

#define JSON_MAX_MARKS 4096

/* One bulk value met while writing (for the instance's bulk table). */
struct json_bulk {
    char path[96];       /* tag path as in the URI */
    uint32_t tag;
    uint16_t vr;
    uint16_t flags;      /* dcm_elem flags (DCM_E_ENCAPS...) */
    uint64_t offset;
    uint64_t len;
};

struct json_out {
    struct buf text;     /* the JSON object; owned, buf_release() */
    size_t n_marks;      /* insertion points of <BASE>, increasing */
    size_t marks[JSON_MAX_MARKS];
    size_t n_bulk;
    struct json_bulk *bulk; /* owned (malloc), n_bulk entries */
};

/* Instance URI parts used in BulkDataURIs (borrowed strings). */
struct json_uris {
    const char *study_uid;
    const char *series_uid;
    const char *sop_uid;
};

void json_out_init(struct json_out *o);
void json_out_release(struct json_out *o);

/* Selects top-level elements to write; NULL writes all. */
typedef bool (*json_filter_fn)(uint32_t tag);

/* Appends the JSON object for f's dataset to o (top-level elements for which
 * filter returns true, when filter is non-NULL). Returns 0, -ENOMEM, -E2BIG
 * (output over its limit or too many bulk values). */
int json_write_dataset(const struct dcm_file *f, const struct json_uris *u, json_filter_fn filter,
                       struct json_out *o);

/* Appends s[0..len) as a JSON string literal (with quotes), escaping as
 * RFC 8259 requires; invalid UTF-8 bytes become U+FFFD. */
int json_put_string(struct buf *b, const char *s, size_t len);

/* Appends base64 of data. */
int json_put_base64(struct buf *b, const uint8_t *data, size_t len);

/* Converts a DS or IS text value to JSON number text in out; returns 0, or
 * -EINVAL when the text is not a number (the caller writes a string). */
int json_number_text(const char *s, size_t len, char *out, size_t cap);

#endif
