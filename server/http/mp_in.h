/*
 * mp_in.h - streaming multipart/related reader (RFC 2046 5.1, RFC 2387).
 *
 * A push parser: mp_in_feed() takes body chunks of any size, split anywhere
 * (a boundary or a header may straddle chunks), and calls back for each part:
 * part_begin with its parsed headers, part_data with body bytes in order (in
 * pieces of any size, never copied into a whole-part buffer), part_end. It
 * holds at most max_header_bytes of header text plus the boundary length
 * plus a small constant, whatever the body size.
 * Must not: know libmicrohttpd, files or DICOM.
 *
 * Grammar accepted: optional preamble, "--boundary" [transport padding] CRLF,
 * headers CRLF CRLF, body, CRLF "--boundary" ... "--boundary--" [epilogue].
 * Bare LF line ends are accepted as well as CRLF (clients in the wild send
 * both). Header names are case-insensitive; folded headers are joined.
 */
#ifndef YY_MP_IN_H
#define YY_MP_IN_H

#include <stddef.h>
#include <stdint.h>

#define MP_IN_MAX_HEADERS 32

struct mp_header {
    char *name;  /* lower-cased, NUL-terminated */
    char *value; /* trimmed, NUL-terminated */
};

/* Headers of one part; borrowed, valid only during the part_begin call. */
struct mp_part_headers {
    unsigned n;
    struct mp_header h[MP_IN_MAX_HEADERS];
    const char *content_type;     /* value of Content-Type or NULL */
    const char *content_location; /* value of Content-Location or NULL */
};

/* Callbacks return 0 to continue or a negative errno to stop the parse;
 * mp_in_feed() then returns that value. */
struct mp_in_cb {
    int (*part_begin)(void *ctx, const struct mp_part_headers *h);
    int (*part_data)(void *ctx, const uint8_t *data, size_t len);
    int (*part_end)(void *ctx);
};

struct mp_in;

/* boundary: the boundary parameter (without leading "--"), 1..70 chars as
 * RFC 2046 allows. max_header_bytes bounds one part's header block (0 =
 * 16 KiB). Returns NULL on OOM or an invalid boundary. Owned: mp_in_free(). */
struct mp_in *mp_in_new(const char *boundary, size_t max_header_bytes, const struct mp_in_cb *cb,
                        void *ctx);
void mp_in_free(struct mp_in *m);

/* Feeds len bytes. Returns 0, a callback's error, or -EBADMSG with
 * mp_in_error() describing the malformation (e.g. header block too long,
 * bytes after the close delimiter are fine). After an error, further feeds
 * return the same error. */
int mp_in_feed(struct mp_in *m, const uint8_t *data, size_t len);

/* Declares end of body. Returns 0 when the close delimiter was seen, else
 * -EBADMSG ("body ended inside a part", "no parts"...). */
int mp_in_finish(struct mp_in *m);

/* Static or internal text describing the last error; "" if none. */
const char *mp_in_error(const struct mp_in *m);

/* Number of parts begun so far. */
unsigned mp_in_parts(const struct mp_in *m);

#endif
