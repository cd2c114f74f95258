/*
 * gzip_out.c - streaming gzip compression into a buf.
 */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <zlib.h>

#include "http/gzip_out.h"
#include "core/banned.h"

int gzip_out_init(struct gzip_out *g)
{
    z_stream *z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    /* 15 + 16: a gzip wrapper; memLevel 8; level 1 keeps up with the rows */
    if (deflateInit2(z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return -ENOMEM;
    }
    g->z = z;
    return 0;
}

void gzip_out_release(struct gzip_out *g)
{
    if (!g->z)
        return;
    deflateEnd(g->z);
    free(g->z);
    g->z = NULL;
}

int gzip_out_write(struct gzip_out *g, const void *in, size_t len, bool finish, struct buf *out)
{
    z_stream *z = g->z;
    if (!z)
        return -EINVAL;
    z->next_in = (Bytef *)(uintptr_t)in;
    int flush = finish ? Z_FINISH : Z_NO_FLUSH;
    /* uInt lengths: feed at most 1 GiB per call (buf caps are smaller) */
    if (len > (1u << 30))
        return -E2BIG;
    z->avail_in = (uInt)len;
    for (;;) {
        size_t room = deflateBound(z, z->avail_in) + 64;
        int r = buf_reserve(out, room);
        if (r)
            return r;
        z->next_out = (Bytef *)out->data + out->len;
        z->avail_out = (uInt)(out->cap - out->len - 1); /* keep the NUL */
        size_t before = z->avail_out;
        int zr = deflate(z, flush);
        out->len += before - z->avail_out;
        out->data[out->len] = 0;
        if (zr == Z_STREAM_END)
            return 0;
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -EIO;
        if (z->avail_in == 0 && !finish)
            return 0;
    }
}
