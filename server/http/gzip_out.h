/*
 * gzip_out.h - gzip content coding for streamed responses whose length is
 * not known in advance (QIDO-RS result lists).
 *
 * Owns: the zlib stream. Compresses at a low level: the text compresses
 * about tenfold even so, and the CPU cost stays far below the JSON work.
 */
#ifndef YY_GZIP_OUT_H
#define YY_GZIP_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct gzip_out {
    void *z; /* z_stream, NULL until gzip_out_init */
};

int gzip_out_init(struct gzip_out *g);
void gzip_out_release(struct gzip_out *g);
/* Compresses in[0..len) appending to out; finish ends the member (header,
 * blocks and trailer are all written). 0, -ENOMEM, -E2BIG or -EIO. */
int gzip_out_write(struct gzip_out *g, const void *in, size_t len, bool finish, struct buf *out);

#endif
