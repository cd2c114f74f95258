/*
 * mime.h - media types (RFC 9110 8.3.1) and Accept headers (RFC 9110 12.5.1)
 * as DICOMweb uses them (PS3.18 8.7): parameters such as type, boundary,
 * transfer-syntax, charset, and quality values.
 *
 * Pure parsing into caller-provided arena memory; no I/O, no libmicrohttpd.
 */
#ifndef YY_MIME_H
#define YY_MIME_H

#include <stdbool.h>
#include <stddef.h>

struct arena;

#define MIME_MAX_PARAMS 8
#define MIME_MAX_RANGES 32

struct mime_param {
    const char *name;  /* lower-cased */
    const char *value; /* unquoted (quoted-string escapes resolved) */
};

struct mime_type {
    const char *type;    /* lower-cased, e.g. "multipart" or "*" */
    const char *subtype; /* lower-cased, e.g. "related" or "*" */
    unsigned n_params;
    struct mime_param params[MIME_MAX_PARAMS];
    double q;            /* 0..1, 1 when absent; "q" is not kept in params */
};

struct mime_accept {
    unsigned n;
    struct mime_type ranges[MIME_MAX_RANGES];
};

/* Parses one media type, e.g. a Content-Type value. Strings live in arena.
 * Returns 0, -EBADMSG when malformed, -ENOMEM. */
int mime_parse(struct arena *a, const char *s, struct mime_type *out);

/* Parses an Accept header value (comma-separated media ranges). Parameters
 * are kept in order; the quoted form of "type" ("application/dicom") and the
 * unquoted one are equivalent. Ranges with a malformed syntax make the whole
 * value -EBADMSG. More than MIME_MAX_RANGES ranges: -E2BIG. An empty or NULL
 * value gives n = 1 with "* / *" (no space) and q = 1. */
int mime_parse_accept(struct arena *a, const char *s, struct mime_accept *out);

/* Value of parameter name (lower-case) or NULL. */
const char *mime_param(const struct mime_type *t, const char *name);

/* True when range (may hold wildcards) matches type/subtype exactly
 * (case-insensitive). */
bool mime_matches(const struct mime_type *range, const char *type, const char *subtype);

#endif
