/* mp_out.c - see mp_out.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/arena.h"
#include "dicomweb/mp_out.h"
#include "core/banned.h"

enum state { ST_NEXT, ST_HEAD, ST_BODY, ST_TAIL, ST_CLOSE, ST_DONE };

struct mp_out {
    const char *boundary;
    mp_out_next_fn next;
    void *ctx;
    void (*free_ctx)(void *);
    uint64_t *bytes;
    enum state st;
    struct mp_out_part part;
    char head[700];
    size_t head_len, head_pos;
    uint64_t body_pos;
    unsigned n_parts;
    char tail[100];
    size_t tail_len, tail_pos;
};

const char *mp_out_boundary(struct req *r)
{
    uint8_t rnd[12];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd));
    return arena_printf(r->a, "yy-%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x-%llu", rnd[0],
                        rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9],
                        rnd[10], rnd[11], (unsigned long long)r->id);
}

uint64_t mp_out_part_overhead(const char *boundary, const char *headers)
{
    /* "--B\r\n" headers "\r\n" body "\r\n" */
    return 2 + strlen(boundary) + 2 + strlen(headers) + 2 + 2;
}

uint64_t mp_out_close_len(const char *boundary)
{
    return 2 + strlen(boundary) + 4;
}

static void release_part(struct mp_out *m)
{
    if (m->part.fd >= 0)
        close(m->part.fd);
    m->part.fd = -1;
    buf_reset(&m->part.mem);
}

static ssize_t mp_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct mp_out *m = cls;
    (void)pos;
    size_t n = 0;
    while (n < max) {
        switch (m->st) {
        case ST_NEXT: {
            release_part(m);
            m->part.headers[0] = 0;
            m->part.off = m->part.len = 0;
            int r = m->next(m->ctx, &m->part);
            if (r < 0)
                return n ? (ssize_t)n : HTTP_STREAM_ERROR;
            if (r == 0) {
                m->st = ST_CLOSE;
                m->tail_len = (size_t)snprintf(m->tail, sizeof(m->tail), "--%s--\r\n", m->boundary);
                m->tail_pos = 0;
                break;
            }
            m->head_len = (size_t)snprintf(m->head, sizeof(m->head), "--%s\r\n%s\r\n", m->boundary,
                                           m->part.headers);
            if (m->head_len >= sizeof(m->head))
                return HTTP_STREAM_ERROR;
            m->head_pos = 0;
            m->body_pos = 0;
            if (m->part.fd < 0)
                m->part.len = m->part.mem.len;
            m->st = ST_HEAD;
            m->n_parts++;
            break;
        }
        case ST_HEAD: {
            size_t k = m->head_len - m->head_pos;
            if (k > max - n)
                k = max - n;
            memcpy(out + n, m->head + m->head_pos, k);
            m->head_pos += k;
            n += k;
            if (m->head_pos == m->head_len)
                m->st = ST_BODY;
            break;
        }
        case ST_BODY: {
            uint64_t left = m->part.len - m->body_pos;
            if (left == 0) {
                m->st = ST_TAIL;
                m->tail_len = 2;
                memcpy(m->tail, "\r\n", 2);
                m->tail_pos = 0;
                break;
            }
            size_t k = left < max - n ? (size_t)left : max - n;
            if (m->part.fd >= 0) {
                ssize_t got = pread(m->part.fd, out + n, k, (off_t)(m->part.off + m->body_pos));
                if (got <= 0)
                    return HTTP_STREAM_ERROR; /* a file vanished or shrank: abort */
                k = (size_t)got;
            } else {
                memcpy(out + n, m->part.mem.data + m->body_pos, k);
            }
            m->body_pos += k;
            n += k;
            break;
        }
        case ST_TAIL:
        case ST_CLOSE: {
            size_t k = m->tail_len - m->tail_pos;
            if (k > max - n)
                k = max - n;
            memcpy(out + n, m->tail + m->tail_pos, k);
            m->tail_pos += k;
            n += k;
            if (m->tail_pos == m->tail_len)
                m->st = m->st == ST_TAIL ? ST_NEXT : ST_DONE;
            break;
        }
        case ST_DONE:
            if (m->bytes)
                *m->bytes += n;
            return n ? (ssize_t)n : HTTP_STREAM_END;
        }
    }
    if (m->bytes)
        *m->bytes += n;
    return (ssize_t)n;
}

static void mp_free(void *cls)
{
    struct mp_out *m = cls;
    release_part(m);
    buf_release(&m->part.mem);
    if (m->free_ctx)
        m->free_ctx(m->ctx);
    free(m);
}

struct http_resp *mp_out_response(const char *boundary, uint64_t total_len, mp_out_next_fn next,
                                  void *ctx, void (*free_ctx)(void *), uint64_t *bytes_counter)
{
    struct mp_out *m = calloc(1, sizeof(*m));
    if (!m) {
        if (free_ctx)
            free_ctx(ctx);
        return NULL;
    }
    m->boundary = boundary;
    m->next = next;
    m->ctx = ctx;
    m->free_ctx = free_ctx;
    m->bytes = bytes_counter;
    m->part.fd = -1;
    buf_init(&m->part.mem, (size_t)4 << 30);
    return http_resp_stream(total_len, mp_read, m, mp_free);
}
