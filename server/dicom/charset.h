/*
 * charset.h - Specific Character Set (0008,0005) to UTF-8 (PS3.5 6.1, PS3.3
 * C.12.1.1.2).
 *
 * Supports the single-byte sets ISO_IR 6/100/101/109/110/144/127/126/138/
 * 148/203/166/13, ISO_IR 192 (UTF-8), GB18030, GBK, and ISO 2022 code
 * extensions (ISO 2022 IR 6/100/.../13/87/159/149/58) with escape sequences,
 * resetting to the initial set at the delimiters PS3.5 6.1.2.5.3 names
 * (value delimiter '\\', CR LF FF TAB, and for PN the '^' and '=').
 * Unknown terms degrade to ISO_IR 6 with bytes >= 0x80 decoded as ISO 8859-1,
 * never fail. Invalid bytes become U+FFFD. Uses iconv; thread-safe (no
 * global state beyond what iconv_open allocates per call).
 */
#ifndef YY_CHARSET_H
#define YY_CHARSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CHARSET_MAX_TERMS 8

/* Parsed value of Specific Character Set. A plain value type, no heap. */
struct charset {
    unsigned n_terms;
    /* Internal codes of each term (first = default G0/G1 set). */
    uint8_t terms[CHARSET_MAX_TERMS];
    bool iso2022;   /* any "ISO 2022 ..." term: escape sequences are honoured */
};

/* The default repertoire (ISO_IR 6), also what an absent (0008,0005) means. */
void charset_default(struct charset *cs);

/* Parses the raw value of (0008,0005) (backslash-separated terms, padded with
 * spaces, first term may be empty). Unknown terms are recorded as ISO_IR 6 and
 * counted in *n_unknown (may be NULL). Returns 0. */
int charset_parse(const char *value, size_t len, struct charset *out, unsigned *n_unknown);

/* True when text in this charset is already UTF-8 compatible with no
 * conversion (ISO_IR 6 with ASCII only, or ISO_IR 192). */
bool charset_is_utf8(const struct charset *cs);

/* True when in[0..len) can be used as UTF-8 without charset_to_utf8():
 * ISO_IR 192, or the default repertoire with ASCII bytes only. */
bool charset_passthrough(const struct charset *cs, const uint8_t *in, size_t len);

/* Appends the UTF-8 form of in[0..len) to out. vr is the element's VR
 * (VR_PN makes '^' and '=' reset ISO 2022 state). Returns 0, or -ENOMEM /
 * -E2BIG from out. Never fails on bad input bytes. */
int charset_to_utf8(const struct charset *cs, const uint8_t *in, size_t len, uint16_t vr,
                    struct buf *out);

#endif
