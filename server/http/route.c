/* route.c - the route table and path matching, see route.h. */
#include "core/common.h"

#include <errno.h>
#include <string.h>

#include "core/arena.h"
#include "dicomweb/handlers.h"
#include "http/query.h"
#include "http/route.h"
#include "core/banned.h"

#define MAX_SEGS 32

#define GET_ONLY "GET, HEAD, OPTIONS"
#define GET_DELETE "GET, HEAD, DELETE, OPTIONS"

/* clang-format off */
static const struct route g_routes[] = {
    /* STOW-RS and QIDO-RS (PS3.18 10.5, 10.6) */
    {"/dicomweb/studies", qido_studies, NULL, stow_begin, stow_data, stow_end,
     "GET, HEAD, POST, OPTIONS"},
    {"/dicomweb/studies/{study}", wado_study, wado_delete, stow_begin, stow_data, stow_end,
     "GET, HEAD, POST, DELETE, OPTIONS"},
    {"/dicomweb/studies/{study}/metadata", wado_metadata, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series", qido_series, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/series", qido_series, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}", wado_study, wado_delete, NULL, NULL, NULL,
     GET_DELETE},
    {"/dicomweb/studies/{study}/series/{series}/metadata", wado_metadata, NULL, NULL, NULL, NULL,
     GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances", qido_instances, NULL, NULL, NULL,
     NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/instances", qido_instances, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/instances", qido_instances, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}", wado_study, wado_delete,
     NULL, NULL, NULL, GET_DELETE},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata", wado_metadata,
     NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
     wado_frames, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{bulk*}",
     wado_bulkdata, NULL, NULL, NULL, NULL, GET_ONLY},
    /* rendered resources and thumbnails (PS3.18 8.3.5, 10.4.1.1.3, Supplement 203) */
    {"/dicomweb/studies/{study}/rendered", rendered_scope, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/rendered", rendered_scope, NULL, NULL, NULL, NULL,
     GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered", rendered_instance,
     NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
     rendered_instance, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/thumbnail", thumbnail_series, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/thumbnail", thumbnail_series, NULL, NULL, NULL,
     NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail",
     thumbnail_instance, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
     thumbnail_instance, NULL, NULL, NULL, NULL, GET_ONLY},
    /* WADO-URI (PS3.18 9) */
    {"/wado", wado_uri, NULL, NULL, NULL, NULL, GET_ONLY},
    {"/dicomweb/wado", wado_uri, NULL, NULL, NULL, NULL, GET_ONLY},
    /* service */
    {"/status", service_status, NULL, NULL, NULL, NULL, GET_ONLY},
    /* the viewer (static files) */
    {"/", web_get, NULL, NULL, NULL, NULL, GET_ONLY, true},
    {"/{file*}", web_get, NULL, NULL, NULL, NULL, GET_ONLY, true},
};
/* clang-format on */

static int param_index(const char *name, size_t len)
{
    static const char *const names[P_COUNT] = {"study", "series", "instance",
                                               "frames", "bulk", "file"};
    for (int i = 0; i < P_COUNT; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return i;
    return -1;
}

const struct route *route_match(struct arena *a, const char *raw_path, const char **decoded_path,
                                const char *params[P_COUNT], unsigned *status, const char **why)
{
    const char *seg[MAX_SEGS];
    const char *raw_seg[MAX_SEGS];
    unsigned n = 0;
    *status = 400;
    for (int i = 0; i < P_COUNT; i++)
        params[i] = NULL;
    if (raw_path[0] != '/') {
        *why = "the path must start with /";
        return NULL;
    }
    /* decode segment by segment so that %2F cannot create a separator */
    const char *p = raw_path + 1;
    char *joined = arena_alloc(a, strlen(raw_path) + 2);
    if (!joined) {
        *status = 500;
        *why = "out of memory";
        return NULL;
    }
    size_t jl = 0;
    bool trailing_slash = false;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) {
            if (!e || e[1] == 0) {
                trailing_slash = true;
                break;
            }
            p = e + 1;
            continue; /* "//" collapses */
        }
        if (n == MAX_SEGS) {
            *why = "too many path segments";
            return NULL;
        }
        size_t dl;
        char *d = query_decode(a, p, len, false, &dl);
        if (!d) {
            *why = "malformed percent-encoding (or %00) in the path";
            return NULL;
        }
        if (memchr(d, '/', dl) || memchr(d, '\\', dl)) {
            *why = "encoded slash in a path segment";
            return NULL;
        }
        if (!strcmp(d, ".") || !strcmp(d, "..")) {
            *why = "dot segment in the path";
            return NULL;
        }
        raw_seg[n] = p;
        seg[n++] = d;
        joined[jl++] = '/';
        memcpy(joined + jl, d, dl);
        jl += dl;
        if (!e)
            break;
        p = e + 1;
    }
    if (jl == 0 || trailing_slash)
        joined[jl++] = '/';
    joined[jl] = 0;
    *decoded_path = joined;
    (void)raw_seg;

    for (size_t ri = 0; ri < YY_ARRAY_LEN(g_routes); ri++) {
        const struct route *rt = &g_routes[ri];
        const char *pp = rt->pattern + 1;
        unsigned k = 0;
        bool ok = true;
        const char *got[P_COUNT] = {NULL};
        if (*pp == 0) { /* "/" */
            if (n == 0)
                goto matched_root;
            continue;
        }
        while (*pp && ok) {
            const char *pe = strchr(pp, '/');
            size_t pl = pe ? (size_t)(pe - pp) : strlen(pp);
            if (pp[0] == '{') {
                bool rest = pl >= 3 && pp[pl - 2] == '*';
                int pi = param_index(pp + 1, pl - (rest ? 3 : 2));
                if (pi < 0 || k >= n) {
                    ok = false;
                    break;
                }
                if (rest) {
                    /* the remainder, joined with '/' */
                    size_t tl = 0;
                    for (unsigned j = k; j < n; j++)
                        tl += strlen(seg[j]) + 1;
                    char *t = arena_alloc(a, tl + 1);
                    if (!t) {
                        ok = false;
                        break;
                    }
                    size_t o = 0;
                    for (unsigned j = k; j < n; j++) {
                        if (j > k)
                            t[o++] = '/';
                        size_t sl = strlen(seg[j]);
                        memcpy(t + o, seg[j], sl);
                        o += sl;
                    }
                    t[o] = 0;
                    got[pi] = t;
                    k = n;
                } else {
                    got[pi] = seg[k++];
                }
            } else {
                if (k >= n || strlen(seg[k]) != pl || strncmp(seg[k], pp, pl) != 0) {
                    ok = false;
                    break;
                }
                k++;
            }
            pp = pe ? pe + 1 : pp + pl;
        }
        if (!ok || k != n)
            continue;
        for (int i = 0; i < P_COUNT; i++)
            params[i] = got[i];
        *status = 200;
        return rt;
    matched_root:
        *status = 200;
        return rt;
    }
    *status = 404;
    *why = "no such resource";
    return NULL;
}
