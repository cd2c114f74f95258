/*
 * route.h - the ONE table of every URL the server answers (route.c), and
 * matching a decoded path against it.
 *
 * Patterns are literal segments and named parameters: {study}, {series},
 * {instance}, {frames}, and {bulk*} / {file*} which take the rest of the
 * path. Matching never allocates beyond the request arena and rejects dot
 * segments and encoded slashes before any handler sees a path.
 */
#ifndef YY_ROUTE_H
#define YY_ROUTE_H

#include "http/http.h"

struct route {
    const char *pattern;
    handler_fn get;        /* GET and HEAD */
    handler_fn del;        /* DELETE */
    handler_fn post_begin; /* POST: headers arrived */
    upload_fn post_data;   /* POST: a chunk of body */
    handler_fn post_end;   /* POST: body complete */
    const char *allow;     /* Allow header value */
    bool no_index;         /* never reads the index (static files): its GETs
                              need not wait for rows being committed */
};

/* Splits raw_path into decoded segments and matches the table.
 * Returns the route and fills params (arena strings), or NULL with *status
 * 404 (no route) or 400 (malformed path: bad escape, NUL, "..", encoded
 * '/'); *why (static) says which. */
const struct route *route_match(struct arena *a, const char *raw_path, const char **decoded_path,
                                const char *params[P_COUNT], unsigned *status, const char **why);

#endif
