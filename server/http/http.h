/*
 * http.h - what request handlers see of HTTP. Only http/ includes
 * <microhttpd.h>; handlers in dicomweb/ use this interface.
 *
 * A struct req lives from the first byte of a request to its completion
 * callback; its arena owns every string in it and everything handlers put in
 * it. Release hooks registered on the arena (arena_on_release) run when the
 * request ends, however it ends (success, error, client abort, timeout), so
 * they are where handlers close fds and unlink temp files.
 */
#ifndef YY_HTTP_H
#define YY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "http/query.h"

struct app;
struct arena;
struct route;

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_OPTIONS, HTTP_OTHER };

/* Route parameters (path segments named in the route table). */
enum route_param { P_STUDY, P_SERIES, P_INSTANCE, P_FRAMES, P_BULK, P_FILE, P_COUNT };

struct req {
    struct arena *a;
    struct app *app;
    uint64_t id;
    enum http_method method;
    const char *method_name;
    const char *path;         /* percent-decoded path, e.g. "/dicomweb/studies" */
    const char *raw_path;     /* as received */
    const char *query_raw;    /* after '?', "" if none */
    struct query query;       /* parsed query (decoded) */
    const char *param[P_COUNT]; /* route parameters, decoded; NULL when absent */
    const struct route *route;
    void *state;              /* handler state (uploads); arena memory */
    /* set by http/ */
    void *conn;               /* struct MHD_Connection */
    unsigned status;
    uint64_t bytes_out;
    struct timespec t0;
    bool responded;
    bool started;
    bool in_body;             /* POST body still arriving */
    unsigned deferred_status; /* error to send when the body has ended */
    const char *deferred_msg;
    bool upload_started;
    uint64_t upload_bytes;    /* body bytes seen so far */
};

/* Handler results: 0 = handled (a response was queued, or the upload goes
 * on); negative errno = http/ answers with http_status_from_err(). */
typedef int (*handler_fn)(struct req *r);
typedef int (*upload_fn)(struct req *r, const uint8_t *data, size_t len);

/* Value of request header name (case-insensitive) or NULL. */
const char *http_header(struct req *r, const char *name);

/* Whether Accept-Encoding allows gzip (RFC 9110 12.5.3: "gzip", "x-gzip"
 * or "*" with a non-zero q). */
bool http_accepts_gzip(struct req *r);

/* The one mapping from errno-style errors to HTTP status codes. */
unsigned http_status_from_err(int err);

/* Base URL of this server as the client sees it ("http://host:port"), from
 * public_url or the Host header. Arena string. */
const char *http_base_url(struct req *r);

/* ---- responses ---- */

struct http_resp;

/* A response from bytes: copied when copy, else data must be malloc'ed and
 * is taken over (freed by the response). NULL on OOM. */
struct http_resp *http_resp_buffer(void *data, size_t len, bool copy);
/* A response from bytes owned elsewhere: release(cls) runs once when the
 * response is done with them (also when it could not be made). */
struct http_resp *http_resp_lent(const void *data, size_t len, void (*release)(void *),
                                 void *cls);
/* A response sending len bytes of fd from off (zero-copy sendfile); the fd
 * is taken over and closed by the response. */
struct http_resp *http_resp_fd(int fd, uint64_t off, uint64_t len);

#define HTTP_SIZE_UNKNOWN UINT64_MAX
#define HTTP_STREAM_END ((ssize_t)-1)
#define HTTP_STREAM_ERROR ((ssize_t)-2)
/* A response produced by read(ctx, pos, buf, max) calls: returns bytes
 * written (> 0), HTTP_STREAM_END, or HTTP_STREAM_ERROR (the connection is
 * aborted: a client never sees a silently shortened body). free_ctx runs
 * once when the response is destroyed. */
struct http_resp *http_resp_stream(uint64_t size,
                                   ssize_t (*read)(void *ctx, uint64_t pos, char *buf,
                                                   size_t max),
                                   void *ctx, void (*free_ctx)(void *ctx));

/* Adds a response header. 0 or -ENOMEM. */
int http_resp_header(struct http_resp *resp, const char *name, const char *value);
/* Destroys an unsent response. */
void http_resp_free(struct http_resp *resp);

/* Queues resp with status (consumes resp, also on failure). Adds CORS and
 * common headers. For HEAD, the body is not sent. Returns 0 or -EIO. */
int http_send(struct req *r, unsigned status, struct http_resp *resp);

/* Sends an error: JSON body {"error": <status text>, "message": <text>}
 * plus a Warning header; logs once at warn (5xx: error). */
int http_error(struct req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends a small body with a content type. */
int http_send_text(struct req *r, unsigned status, const char *content_type, const char *body,
                   size_t len);

/* ---- server ---- */

struct http_server;

/* Starts listening on app->cfg.listen. Returns 0 or -errno (err set). */
int http_start(struct app *app, struct http_server **out, char *err, size_t err_cap);
/* Port actually bound (useful with port 0). */
unsigned http_port(const struct http_server *s);
/* Stops accepting, lets in-flight requests finish within grace_s, stops. */
void http_stop(struct http_server *s, unsigned grace_s);

#endif
