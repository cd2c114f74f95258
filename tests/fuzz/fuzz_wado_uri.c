/* fuzz_wado_uri.c - WADO-URI request parsing (the input is a query
 * string). */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "dicomweb/wado_uri_parse.h"
#include "http/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    struct arena *a = arena_new(0);
    if (!a)
        return 0;
    char *s = arena_strndup(a, (const char *)data, size);
    struct query q;
    const char *bad = NULL;
    if (s && query_parse(a, s, &q, &bad) == 0) {
        struct wado_uri w;
        char err[256];
        if (wado_uri_parse(a, &q, &w, err, sizeof(err)) == 0 &&
            (!w.study || strlen(w.study) > 64 || !w.object))
            __builtin_trap();
    }
    arena_free(a);
    return 0;
}
