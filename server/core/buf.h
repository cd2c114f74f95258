/*
 * buf.h - growable byte buffer (after git's strbuf): always NUL-terminated
 * after data[len], so it can be used as a C string.
 *
 * Owns: data (malloc'ed). A buf has a hard cap (max_bytes, 0 = 1 GiB);
 * growing past it fails with -E2BIG, so user-controlled input cannot grow a
 * buffer without bound.
 */
#ifndef YY_BUF_H
#define YY_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data; /* owned; NULL until first growth */
    size_t len;
    size_t cap;
    size_t max_bytes;
};

#define BUF_INIT {NULL, 0, 0, 0}

void buf_init(struct buf *b, size_t max_bytes);
void buf_release(struct buf *b);
/* Makes room for extra more bytes. 0, -ENOMEM or -E2BIG. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
/* Removes the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);
/* Detaches data (caller owns it, free()); b is re-initialised. */
char *buf_detach(struct buf *b, size_t *len);

#endif
