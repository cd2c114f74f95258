/* fuzz_qido.c - the URL query string parser and the QIDO-RS search parser
 * at every level (the input is a raw query string). */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "dicomweb/qido_parse.h"
#include "http/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    struct arena *a = arena_new(0);
    if (!a)
        return 0;
    char *s = arena_strndup(a, (const char *)data, size);
    struct query q;
    const char *bad = NULL;
    if (s && strlen(s) == size && query_parse(a, s, &q, &bad) == 0) {
        for (int level = INDEX_STUDY; level <= INDEX_INSTANCE; level++) {
            struct qido_params p;
            qido_params_init(&p, a, &q, (enum index_level)level, 100, 1000);
            (void)qido_parse(&p);
            if (p.q.n_match > INDEX_MAX_MATCH || p.q.limit > 1000)
                __builtin_trap();
            qido_params_release(&p);
        }
    }
    arena_free(a);
    return 0;
}
