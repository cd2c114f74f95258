/*
 * json_scan.h - walks the members of a DICOM JSON object as text, without
 * building a tree: QIDO picks a few attributes out of each instance's
 * stored JSON, and parsing all of it per row cost more than the rest of the
 * search together.
 *
 * Only the nesting is followed (strings, objects, arrays); values are not
 * validated, they were written by json.c at ingest. Pure; no allocation.
 */
#ifndef YY_JSON_SCAN_H
#define YY_JSON_SCAN_H

#include <stddef.h>

struct json_member {
    const char *key; /* between the quotes, not unescaped */
    size_t key_len;
    const char *val; /* the value's text */
    size_t val_len;
};

/* Next member of the top-level object text[0..len) from *pos (0 to start).
 * 1 with *m set, 0 after the last member, -EBADMSG when the text is not
 * an object or is cut short. */
int json_scan_next(const char *text, size_t len, size_t *pos, struct json_member *m);

#endif
