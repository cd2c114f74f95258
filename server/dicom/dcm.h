/*
 * dcm.h - Part 10 file reader: a parsed DICOM dataset tree (PS3.5 7, PS3.10 7).
 *
 * Owns: the tree, in one arena per parsed file (dcm_file_free releases all).
 * Reads Implicit VR LE, Explicit VR LE/BE and Deflated Explicit VR LE, with
 * defined and undefined lengths, sequences nested up to DCM_MAX_DEPTH,
 * encapsulated pixel data (fragments recorded, not loaded), private and
 * unknown tags (VR from the dictionary, else UN).
 *
 * Values are loaded into memory converted to little endian, except "bulk"
 * values, which stay in the file and are described by offset and length:
 * pixel data (7FE0,0008/0009/0010) always, and binary VRs (OB OD OF OL OV OW
 * UN) longer than opts.bulk_threshold. Offsets are positions in the dataset
 * stream: file offsets, except for deflated files where they are positions
 * in the inflated stream (dcm_file.deflated tells).
 *
 * Must not: allocate without bound (element count, depth, loaded bytes and
 * fragment count are limited), trust any length, log above debug. Malformed
 * input returns -EBADMSG with a human-readable reason.
 */
#ifndef YY_DCM_H
#define YY_DCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena;

#define DCM_MAX_DEPTH 64
#define DCM_UNDEFINED 0xFFFFFFFFu

#define TAG(g, e) ((uint32_t)(((uint32_t)(g) << 16) | (uint32_t)(e)))
#define TAG_GROUP(t) ((uint16_t)((t) >> 16))
#define TAG_ELEM(t) ((uint16_t)((t)&0xFFFF))

#define TAG_ITEM TAG(0xFFFE, 0xE000)
#define TAG_ITEM_DELIM TAG(0xFFFE, 0xE00D)
#define TAG_SEQ_DELIM TAG(0xFFFE, 0xE0DD)

#define TAG_TRANSFER_SYNTAX_UID TAG(0x0002, 0x0010)
#define TAG_MEDIA_STORAGE_SOP_CLASS_UID TAG(0x0002, 0x0002)
#define TAG_MEDIA_STORAGE_SOP_INSTANCE_UID TAG(0x0002, 0x0003)
#define TAG_SOURCE_AE_TITLE TAG(0x0002, 0x0016)
#define TAG_SPECIFIC_CHARACTER_SET TAG(0x0008, 0x0005)
#define TAG_EXTENDED_OFFSET_TABLE TAG(0x7FE0, 0x0001)
#define TAG_EXTENDED_OFFSET_TABLE_LENGTHS TAG(0x7FE0, 0x0002)
#define TAG_FLOAT_PIXEL_DATA TAG(0x7FE0, 0x0008)
#define TAG_DOUBLE_FLOAT_PIXEL_DATA TAG(0x7FE0, 0x0009)
#define TAG_PIXEL_DATA TAG(0x7FE0, 0x0010)

enum dcm_elem_flags {
    DCM_E_BULK = 1 << 0,      /* value not loaded; see offset/len */
    DCM_E_UNDEF_LEN = 1 << 1, /* encoded with undefined length */
    DCM_E_ENCAPS = 1 << 2,    /* encapsulated pixel data: see frags */
    DCM_E_IMPLICIT = 1 << 3,  /* VR came from the dictionary, not the file */
};

/* One fragment (item) of encapsulated pixel data. */
struct dcm_frag {
    uint64_t offset; /* first byte of the fragment's value */
    uint32_t len;
};

struct dcm_ds;

struct dcm_elem {
    uint32_t tag;
    uint16_t vr;
    uint16_t flags;  /* enum dcm_elem_flags */
    uint32_t len;    /* value length; for SQ / encapsulated data with undefined
                        length, the length up to (excluding) the delimiter */
    uint64_t offset; /* first byte of the value in the dataset stream */
    uint8_t *value;  /* loaded value (little endian), NUL-terminated for
                        convenience; NULL when bulk or empty */
    struct dcm_ds *items;    /* SQ: n_items datasets */
    uint32_t n_items;
    struct dcm_frag *frags;  /* encapsulated: frags[0] is the Basic Offset
                                Table item, frags[1..] the fragments */
    uint32_t n_frags;
};

struct dcm_ds {
    struct dcm_elem *elems; /* sorted by tag, no duplicates (first kept) */
    uint32_t n;
    uint64_t offset; /* first byte of the item's content */
};

struct dcm_opts {
    uint32_t bulk_threshold;  /* 0 = 1024 */
    uint32_t max_elems;       /* 0 = 1,000,000 */
    uint64_t max_loaded;      /* 0 = 64 MiB of loaded values */
    uint32_t max_frags;       /* 0 = 1,000,000 */
    bool stop_before_pixels;  /* skip everything from (7FE0,0010) on */
};

struct dcm_file {
    struct arena *arena;       /* owns everything below */
    struct dcm_ds meta;        /* group 0002 */
    struct dcm_ds ds;          /* the dataset */
    const char *ts_uid;        /* transfer syntax (meta), "" if absent */
    unsigned ts_flags;         /* enum ts_flags actually used for the dataset */
    bool deflated;             /* offsets are positions in the inflated stream */
    bool big_endian;           /* bulk values in the file are big endian */
    uint64_t dataset_offset;   /* file offset of the first dataset byte */
    uint64_t file_size;        /* bytes in the file (0 if unknown) */
};

/* Parses a Part 10 file from fd (read from offset 0 with pread; fd is
 * borrowed). On success *out is owned by the caller: dcm_file_free().
 * On failure returns -EBADMSG (malformed: reason in err), -ENOMEM, -E2BIG
 * (a limit), -EIO; err (may be NULL) receives a short reason. */
int dcm_parse_fd(int fd, const struct dcm_opts *opts, struct dcm_file **out, char *err,
                 size_t err_cap);

/* Same from memory; data is borrowed for the call only. */
int dcm_parse_mem(const uint8_t *data, size_t len, const struct dcm_opts *opts,
                  struct dcm_file **out, char *err, size_t err_cap);

void dcm_file_free(struct dcm_file *f);

/* Element with tag in ds, or NULL (binary search). */
const struct dcm_elem *dcm_find(const struct dcm_ds *ds, uint32_t tag);

/* Loaded string value trimmed of trailing spaces and NULs (and leading
 * spaces when trim_lead), as a NUL-terminated string in the file's arena.
 * Returns NULL when absent, bulk or empty. Not charset-converted. */
const char *dcm_str(const struct dcm_file *f, const struct dcm_ds *ds, uint32_t tag);

/* First numeric value of US/SS/UL/SL/IS/DS element as long; def if absent
 * or unparsable. */
long dcm_long(const struct dcm_ds *ds, uint32_t tag, long def);

#endif
