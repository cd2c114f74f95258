/* fuzz_multipart.c - the streaming multipart reader. The first byte picks a
 * chunk size and the boundary comes from the input's first line, so the
 * fuzzer can reach every state with boundaries split across chunks. */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "http/mp_in.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_begin(void *ctx, const struct mp_part_headers *h)
{
    (void)ctx;
    for (unsigned i = 0; i < h->n; i++)
        if (!h->h[i].name || !h->h[i].value)
            __builtin_trap();
    return 0;
}

static int on_data(void *ctx, const uint8_t *d, size_t n)
{
    size_t *total = ctx;
    if (n && !d)
        __builtin_trap();
    *total += n;
    return 0;
}

static int on_end(void *ctx)
{
    (void)ctx;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = (size_t)data[0] % 61 + 1;
    data++;
    size--;
    /* boundary: up to the first newline, 1..70 bytes */
    size_t bl = 0;
    while (bl < size && bl < 70 && data[bl] != '\n')
        bl++;
    if (bl == 0 || bl >= size)
        return 0;
    char boundary[72];
    memcpy(boundary, data, bl);
    boundary[bl] = 0;
    data += bl + 1;
    size -= bl + 1;
    size_t total = 0;
    struct mp_in_cb cb = {on_begin, on_data, on_end};
    struct mp_in *m = mp_in_new(boundary, 4096, &cb, &total);
    if (!m)
        return 0;
    for (size_t i = 0; i < size; i += chunk) {
        size_t n = size - i < chunk ? size - i : chunk;
        if (mp_in_feed(m, data + i, n) < 0)
            break;
    }
    (void)mp_in_finish(m);
    if (total > size)
        __builtin_trap(); /* never more body bytes than input */
    mp_in_free(m);
    return 0;
}
