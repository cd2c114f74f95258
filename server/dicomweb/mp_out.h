/*
 * mp_out.h - a multipart/related response produced part by part (PS3.18
 * 8.6.1.2): boundary + part headers, then the part body from memory or
 * pread() from a stored file, then the closing boundary. Parts come from a
 * producer callback, so only one part is in memory at a time. A producer
 * error after the first byte aborts the response (the client never gets a
 * silently shortened body).
 */
#ifndef YY_MP_OUT_H
#define YY_MP_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/http.h"

/* One part, filled by the producer. */
struct mp_out_part {
    char headers[512];   /* e.g. "Content-Type: application/dicom\r\n" (each line CRLF) */
    struct buf mem;      /* body in memory (used when fd < 0); mp_out resets it */
    int fd;              /* body from a file: fd (mp_out closes it), else -1 */
    uint64_t off, len;   /* range of fd */
};

/* Returns 1 with *p filled, 0 when there are no more parts, <0 on error. */
typedef int (*mp_out_next_fn)(void *ctx, struct mp_out_part *p);

/* A unique boundary for one response (arena string). */
const char *mp_out_boundary(struct req *r);

/* Creates the streaming response. total_len is the exact body length when
 * known (HTTP_SIZE_UNKNOWN otherwise: chunked). ctx is freed with free_ctx
 * when the response is destroyed. */
struct http_resp *mp_out_response(const char *boundary, uint64_t total_len, mp_out_next_fn next,
                                  void *ctx, void (*free_ctx)(void *), uint64_t *bytes_counter);

/* Bytes a part adds around a body of body_len with these headers. */
uint64_t mp_out_part_overhead(const char *boundary, const char *headers);
/* Bytes of the closing delimiter. */
uint64_t mp_out_close_len(const char *boundary);

#endif
