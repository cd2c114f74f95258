/*
 * ts.h - transfer syntaxes we know (PS3.5 10, PS3.6 Annex A): how a dataset
 * is encoded, and which media type a compressed frame has (PS3.18 8.7.3).
 *
 * Static read-only table; pure lookups.
 */
#ifndef YY_TS_H
#define YY_TS_H

#include <stdbool.h>

#define UID_IMPLICIT_LE "1.2.840.10008.1.2"
#define UID_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define UID_DEFLATED_LE "1.2.840.10008.1.2.1.99"
#define UID_EXPLICIT_BE "1.2.840.10008.1.2.2"

enum ts_flags {
    TS_IMPLICIT = 1 << 0, /* implicit VR (else explicit) */
    TS_BIG = 1 << 1,      /* big endian dataset */
    TS_DEFLATED = 1 << 2, /* dataset after the meta header is raw deflate */
    TS_ENCAPS = 1 << 3,   /* pixel data is encapsulated (compressed frames) */
    TS_LOSSY = 1 << 4,    /* the codec may be lossy */
    TS_RETIRED = 1 << 5,
};

struct ts_info {
    const char *uid;
    const char *keyword;    /* e.g. "JPEGBaseline8Bit" */
    const char *media_type; /* frame media type for encapsulated syntaxes, e.g.
                               "image/jpeg"; "application/octet-stream" for native */
    unsigned flags;
};

/* Entry for a transfer syntax UID, or NULL if unknown. */
const struct ts_info *ts_lookup(const char *uid);

/* Flags for uid: known entries give their flags; unknown UIDs are treated as
 * explicit VR LE with encapsulated pixel data, which is what PS3.5 requires
 * of every compressed syntax. */
unsigned ts_flags_of(const char *uid);

/* Number of table entries and entry i (for tests and conformance docs). */
unsigned ts_count(void);
const struct ts_info *ts_at(unsigned i);

#endif
