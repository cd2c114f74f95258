/* buf.c - see buf.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/banned.h"

#define BUF_DEFAULT_MAX ((size_t)1 << 30)

void buf_init(struct buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
}

void buf_release(struct buf *b)
{
    free(b->data);
    buf_init(b, b->max_bytes);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

#define BUF_EXACT_MIN ((size_t)64 << 10)

int buf_reserve(struct buf *b, size_t extra)
{
    size_t max = b->max_bytes ? b->max_bytes : BUF_DEFAULT_MAX;
    if (extra > max || b->len > max - extra)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    if (need >= BUF_EXACT_MIN && need - cap >= cap) {
        /* one large reservation (a frame, a file): what it needs, rounded
         * to a page, not the next power of two, which for a 512 KiB frame
         * plus its NUL was 1 MiB: over malloc's mmap threshold, so mapped
         * and page-faulted anew on every request */
        cap = need > SIZE_MAX - 4095 ? need : (need + 4095) & ~(size_t)4095;
    }
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int r = buf_reserve(b, len);
    if (r < 0)
        return r;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    /* one formatting pass when the text fits in the spare capacity (the
     * usual case: short pieces of JSON), a second one after growing */
    if (buf_reserve(b, 64) < 0 && buf_reserve(b, 0) < 0)
        return -E2BIG;
    size_t max = b->max_bytes ? b->max_bytes : BUF_DEFAULT_MAX;
    size_t room = b->cap - b->len; /* includes the terminator's byte */
    if (b->len <= max && room > max - b->len + 1)
        room = max - b->len + 1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return 0;
    }
    int r = buf_reserve(b, (size_t)n);
    if (r < 0) {
        b->data[b->len] = 0;
        return r;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *buf_detach(struct buf *b, size_t *len)
{
    char *p = b->data;
    if (!p) {
        p = calloc(1, 1);
    }
    if (len)
        *len = b->len;
    buf_init(b, b->max_bytes);
    return p;
}
