/* fuzz_mime.c - media types and Accept headers (Content-Type of STOW-RS,
 * Accept of every GET). */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "http/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    struct arena *a = arena_new(0);
    if (!a)
        return 0;
    char *s = arena_strndup(a, (const char *)data, size);
    if (s) {
        struct mime_type t;
        if (mime_parse(a, s, &t) == 0) {
            (void)mime_param(&t, "boundary");
            (void)mime_matches(&t, "multipart", "related");
        }
        struct mime_accept ma;
        if (mime_parse_accept(a, s, &ma) == 0) {
            if (ma.n > MIME_MAX_RANGES)
                __builtin_trap();
            for (unsigned i = 0; i < ma.n; i++)
                if (ma.ranges[i].q < 0 || ma.ranges[i].q > 1)
                    __builtin_trap();
        }
    }
    arena_free(a);
    return 0;
}
