/*
 * query.h - URL query strings and percent-decoding (RFC 3986, WHATWG form
 * rules for '+').
 *
 * Pure functions; strings live in the caller's arena.
 */
#ifndef YY_QUERY_H
#define YY_QUERY_H

#include <stdbool.h>
#include <stddef.h>

struct arena;

#define QUERY_MAX_PARAMS 256

struct query_param {
    const char *key;   /* decoded */
    const char *value; /* decoded; "" when no '=' */
};

struct query {
    unsigned n;
    struct query_param p[QUERY_MAX_PARAMS];
};

/* Percent-decodes s[0..len) into the arena ('+' becomes ' ' when plus_space).
 * Returns NULL on OOM, a malformed escape ("%G1", "%4"), or a decoded NUL
 * byte (%00), all of which callers report as 400. *out_len may be NULL. */
char *query_decode(struct arena *a, const char *s, size_t len, bool plus_space, size_t *out_len);

/* Parses "a=1&b=2&a=3" (raw, not yet decoded) keeping order and repeats.
 * Returns 0, -EBADMSG (malformed escape; *bad_key set to the raw key when
 * non-NULL), -E2BIG (more than QUERY_MAX_PARAMS), -ENOMEM. */
int query_parse(struct arena *a, const char *raw, struct query *out, const char **bad_key);

/* First value for key (case-sensitive) or NULL. */
const char *query_get(const struct query *q, const char *key);

#endif
