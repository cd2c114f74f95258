/*
 * server.c - the libmicrohttpd daemon: threads and limits, the request
 * lifecycle (struct req), responses, CORS, the access log.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): handlers may
 * block on fsync and SQLite without stalling other clients; the connection
 * limit bounds the threads. A request's arena is created when its request
 * line arrives (URI log callback) and freed by the completion callback,
 * which runs after success, error, client abort and timeout alike.
 */
#include "core/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/json.h"
#include "dicomweb/ingest.h"
#include "http/http.h"
#include "http/route.h"
#include "core/banned.h"

/* Per-connection state for the watchdog (slow senders, PS: slowloris). */
enum conn_phase { PHASE_HEADERS, PHASE_BODY, PHASE_BUSY };

struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    atomic_int phase;            /* enum conn_phase */
    atomic_int_fast64_t since_ms;/* when the phase began */
    atomic_uint_fast64_t body_bytes;
    uint64_t mark_bytes;         /* watchdog: bytes at the window start */
    int64_t mark_ms;
    bool cut;
};

struct http_server {
    struct MHD_Daemon *d;
    struct app *app;
    atomic_uint_fast64_t next_id;
    atomic_int active;
    unsigned port;
    pthread_mutex_t conns_lock;
    struct conn_track *conns;
    pthread_t watchdog;
    atomic_bool stopping;
};

struct http_resp {
    struct MHD_Response *r;
};

static struct http_server *g_server; /* for handlers that need the port */

/* ---- small helpers ---- */

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct conn_track *track_of(struct MHD_Connection *con)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_phase(struct conn_track *t, enum conn_phase ph)
{
    if (!t)
        return;
    atomic_store(&t->phase, (int)ph);
    atomic_store(&t->since_ms, mono_ms());
}

unsigned http_status_from_err(int err)
{
    switch (err) {
    case -EINVAL:
    case -EBADMSG:
    case -ERANGE:
        return 400;
    case -EACCES:
    case -EPERM:
        return 403;
    case -ENOENT:
        return 404;
    case -ENOTSUP:
        return 406;
    case -EEXIST:
        return 409;
    case -E2BIG:
        return 413;
    case -ENAMETOOLONG:
        return 414;
    case -EMEDIUMTYPE:
        return 415;
    case -ENOSPC:
    case -ENOMEM:
    case -EAGAIN:
        return 503;
    default:
        return 500;
    }
}

static const char *status_text(unsigned s)
{
    switch (s) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

const char *http_header(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* q of one "coding;q=0.5" element: 1 without a q parameter, 0 when bad */
static double coding_q(const char *p, const char *end)
{
    const char *semi = memchr(p, ';', (size_t)(end - p));
    if (!semi)
        return 1;
    for (p = semi + 1; p < end && (*p == ' ' || *p == '\t'); p++)
        ;
    if (end - p < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
        return 1;
    char tmp[16];
    size_t n = (size_t)(end - p - 2);
    if (n == 0 || n >= sizeof(tmp))
        return 0;
    memcpy(tmp, p + 2, n);
    tmp[n] = 0;
    char *e;
    double q = strtod(tmp, &e);
    return (e == tmp || q < 0) ? 0 : q;
}

bool http_accepts_gzip(struct req *r)
{
    const char *ae = http_header(r, "Accept-Encoding");
    if (!ae)
        return false;
    double q_gzip = -1, q_star = -1;
    for (const char *p = ae; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ",");
        size_t name = strcspn(p, " \t;,");
        if (name > (size_t)(end - p))
            name = (size_t)(end - p);
        double q = coding_q(p, end);
        if ((name == 4 && !strncasecmp(p, "gzip", 4)) || (name == 6 && !strncasecmp(p, "x-gzip", 6)))
            q_gzip = q;
        else if (name == 1 && *p == '*')
            q_star = q;
        p = end;
    }
    return q_gzip >= 0 ? q_gzip > 0 : q_star > 0;
}

const char *http_base_url(struct req *r)
{
    const struct config *c = &r->app->cfg;
    if (c->public_url[0]) {
        size_t n = strlen(c->public_url);
        while (n && c->public_url[n - 1] == '/')
            n--;
        return arena_strndup(r->a, c->public_url, n);
    }
    const char *host = http_header(r, "X-Forwarded-Host");
    if (!host)
        host = http_header(r, "Host");
    const char *proto = http_header(r, "X-Forwarded-Proto");
    if (!proto || (strcmp(proto, "https") != 0 && strcmp(proto, "http") != 0))
        proto = "http";
    if (!host || !*host) {
        /* HTTP/1.0 without Host: the listening address */
        return arena_printf(r->a, "http://%s", c->listen);
    }
    /* a Host header is attacker-controlled text that ends up in URLs we
     * return: accept only host[:port] characters */
    for (const char *p = host; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']' || ch == '_'))
            return arena_printf(r->a, "http://%s", c->listen);
    }
    return arena_printf(r->a, "%s://%s", proto, host);
}

/* ---- responses ---- */

struct http_resp *http_resp_buffer(void *data, size_t len, bool copy)
{
    struct http_resp *h = calloc(1, sizeof(*h));
    if (!h) {
        if (!copy)
            free(data);
        return NULL;
    }
    if (copy)
        h->r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_COPY);
    else
        h->r = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!h->r) {
        if (!copy)
            free(data);
        free(h);
        return NULL;
    }
    return h;
}

struct http_resp *http_resp_lent(const void *data, size_t len, void (*release)(void *),
                                 void *cls)
{
    struct http_resp *h = calloc(1, sizeof(*h));
    if (h)
        h->r = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)data, release,
                                                                       cls);
    if (!h || !h->r) {
        release(cls);
        free(h);
        return NULL;
    }
    return h;
}

struct http_resp *http_resp_fd(int fd, uint64_t off, uint64_t len)
{
    struct http_resp *h = calloc(1, sizeof(*h));
    if (!h) {
        close(fd);
        return NULL;
    }
    h->r = MHD_create_response_from_fd_at_offset64(len, fd, off);
    if (!h->r) {
        close(fd);
        free(h);
        return NULL;
    }
    return h;
}

struct stream_ctx {
    ssize_t (*read)(void *ctx, uint64_t pos, char *buf, size_t max);
    void *ctx;
    void (*free_ctx)(void *ctx);
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_ctx *s = cls;
    ssize_t n = s->read(s->ctx, pos, buf, max);
    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_free(void *cls)
{
    struct stream_ctx *s = cls;
    if (s->free_ctx)
        s->free_ctx(s->ctx);
    free(s);
}

struct http_resp *http_resp_stream(uint64_t size,
                                   ssize_t (*read)(void *ctx, uint64_t pos, char *buf,
                                                   size_t max),
                                   void *ctx, void (*free_ctx)(void *ctx))
{
    struct http_resp *h = calloc(1, sizeof(*h));
    struct stream_ctx *s = calloc(1, sizeof(*s));
    if (!h || !s) {
        free(h);
        free(s);
        if (free_ctx)
            free_ctx(ctx);
        return NULL;
    }
    s->read = read;
    s->ctx = ctx;
    s->free_ctx = free_ctx;
    /* MHD callocs the block with the response: a large block costs a
     * memset per response (256 KiB was 7% of the CPU serving frames) */
    size_t block = 64 * 1024;
    if (size != HTTP_SIZE_UNKNOWN && size < block)
        block = size < 1024 ? 1024 : (size_t)size;
    h->r = MHD_create_response_from_callback(size == HTTP_SIZE_UNKNOWN ? MHD_SIZE_UNKNOWN : size,
                                             block, stream_read, s, stream_free);
    if (!h->r) {
        stream_free(s);
        free(h);
        return NULL;
    }
    return h;
}

int http_resp_header(struct http_resp *resp, const char *name, const char *value)
{
    return MHD_add_response_header(resp->r, name, value) == MHD_YES ? 0 : -ENOMEM;
}

void http_resp_free(struct http_resp *resp)
{
    if (!resp)
        return;
    if (resp->r)
        MHD_destroy_response(resp->r);
    free(resp);
}

/* CORS (Fetch standard): same-origin by default; "*" or a list by config. */
static const char *cors_allowed(struct req *r)
{
    const char *origin = http_header(r, "Origin");
    const char *list = r->app->cfg.cors_origins;
    if (!origin || !list[0])
        return NULL;
    if (!strcmp(list, "*"))
        return "*";
    size_t ol = strlen(origin);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == ol && strncmp(p, origin, ol) == 0)
            return origin;
        p = e;
    }
    return NULL;
}

static void add_common_headers(struct req *r, struct MHD_Response *resp)
{
    const char *o = cors_allowed(r);
    if (o) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", o);
        if (strcmp(o, "*") != 0)
            MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "Content-Type, Content-Length, Content-Location, ETag, "
                                "Last-Modified, Warning, Location, Content-Range, Accept-Ranges");
    }
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

int http_send(struct req *r, unsigned status, struct http_resp *resp)
{
    if (!resp)
        return -ENOMEM;
    if (r->responded) {
        http_resp_free(resp);
        return -EALREADY;
    }
    add_common_headers(r, resp->r);
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp->r);
    http_resp_free(resp);
    if (ok != MHD_YES)
        return -EIO;
    r->responded = true;
    r->status = status;
    return 0;
}

int http_send_text(struct req *r, unsigned status, const char *content_type, const char *body,
                   size_t len)
{
    struct http_resp *resp = http_resp_buffer((void *)body, len, true);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += len;
    if (content_type && http_resp_header(resp, "Content-Type", content_type) < 0) {
        http_resp_free(resp);
        return -ENOMEM;
    }
    return http_send(r, status, resp);
}

/* Queues the JSON error response (no logging). */
static int send_error(struct req *r, unsigned status, const char *msg)
{
    struct buf b;
    buf_init(&b, 0);
    int rc = buf_printf(&b, "{\"error\":\"%s\",\"status\":%u,\"message\":", status_text(status),
                        status);
    rc |= json_put_string(&b, msg, strlen(msg));
    rc |= buf_puts(&b, "}\n");
    if (rc) {
        buf_release(&b);
        return -ENOMEM;
    }
    size_t len;
    char *body = buf_detach(&b, &len);
    struct http_resp *resp = http_resp_buffer(body, len, false);
    if (!resp)
        return -ENOMEM;
    /* Warning: 299 (RFC 7234 5.5 "miscellaneous persistent warning"), the
     * form PS3.18 8.4 uses for details; quotes and control chars removed */
    char warn[600];
    size_t w = (size_t)snprintf(warn, sizeof(warn), "299 yingyun \"");
    for (const char *p = msg; *p && w < sizeof(warn) - 2; p++)
        warn[w++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '\'' : *p;
    warn[w++] = '"';
    warn[w] = 0;
    http_resp_header(resp, "Content-Type", "application/json");
    http_resp_header(resp, "Warning", warn);
    if (status == 503)
        http_resp_header(resp, "Retry-After", "30");
    rc = http_send(r, status, resp);
    if (rc == 0)
        r->bytes_out += len;
    return rc;
}

int http_error(struct req *r, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->responded || r->deferred_status)
        return 0;
    if (status >= 500)
        log_error("req %llu: %s %s: %u %s", (unsigned long long)r->id, r->method_name,
                  r->path ? r->path : "?", status, msg);
    else
        log_info("req %llu: %s %s: %u %s", (unsigned long long)r->id, r->method_name,
                 r->path ? r->path : "?", status, msg);
    if (r->in_body) {
        /* MHD cannot queue a response while the body is still arriving:
         * answer when it has ended (the rest of it is discarded) */
        r->deferred_status = status;
        r->deferred_msg = arena_strdup(r->a, msg);
        if (!r->deferred_msg)
            r->deferred_msg = "request refused";
        return 0;
    }
    return send_error(r, status, msg);
}

/* ---- request lifecycle ---- */

static void req_free(struct req *r)
{
    if (r)
        arena_free(r->a);
}

/* Called when the request line arrives: creates the request. */
static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
    struct http_server *s = cls;
    (void)con;
    struct arena *a = arena_new((size_t)16 << 20);
    if (!a)
        return NULL;
    struct req *r = arena_zalloc(a, sizeof(*r));
    if (!r) {
        arena_free(a);
        return NULL;
    }
    r->a = a;
    r->app = s->app;
    r->id = atomic_fetch_add(&s->next_id, 1) + 1;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    const char *q = strchr(uri, '?');
    if (q) {
        r->raw_path = arena_strndup(a, uri, (size_t)(q - uri));
        r->query_raw = arena_strdup(a, q + 1);
    } else {
        r->raw_path = arena_strdup(a, uri);
        r->query_raw = "";
    }
    r->method_name = "?";
    atomic_fetch_add(&s->active, 1);
    return r;
}

static enum http_method parse_method(const char *m)
{
    if (!strcmp(m, "GET"))
        return HTTP_GET;
    if (!strcmp(m, "HEAD"))
        return HTTP_HEAD;
    if (!strcmp(m, "POST"))
        return HTTP_POST;
    if (!strcmp(m, "PUT"))
        return HTTP_PUT;
    if (!strcmp(m, "DELETE"))
        return HTTP_DELETE;
    if (!strcmp(m, "OPTIONS"))
        return HTTP_OPTIONS;
    return HTTP_OTHER;
}

static int answer_options(struct req *r)
{
    struct http_resp *resp = http_resp_buffer((void *)"", 0, true);
    if (!resp)
        return -ENOMEM;
    const char *allow = r->route->allow;
    http_resp_header(resp, "Allow", allow);
    if (cors_allowed(r) && http_header(r, "Access-Control-Request-Method")) {
        http_resp_header(resp, "Access-Control-Allow-Methods", allow);
        const char *rh = http_header(r, "Access-Control-Request-Headers");
        http_resp_header(resp, "Access-Control-Allow-Headers",
                         rh ? rh : "Accept, Content-Type, Range, If-None-Match");
        http_resp_header(resp, "Access-Control-Max-Age", "600");
    }
    return http_send(r, 204, resp);
}

static bool method_allowed(const struct route *rt, enum http_method m)
{
    switch (m) {
    case HTTP_GET:
    case HTTP_HEAD:
        return rt->get != NULL;
    case HTTP_POST:
        return rt->post_begin != NULL;
    case HTTP_DELETE:
        return rt->del != NULL;
    case HTTP_OPTIONS:
        return true;
    default:
        return false;
    }
}

static int send_405(struct req *r)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "{\"error\":\"Method Not Allowed\",\"status\":405,\"allow\":\"%s\"}\n",
             r->route->allow);
    struct http_resp *resp = http_resp_buffer(msg, strlen(msg), true);
    if (!resp)
        return -ENOMEM;
    http_resp_header(resp, "Allow", r->route->allow);
    http_resp_header(resp, "Content-Type", "application/json");
    r->bytes_out += strlen(msg);
    return http_send(r, 405, resp);
}

/* First call for a request: headers are complete. */
static int start(struct req *r, const char *method)
{
    r->method = parse_method(method);
    r->method_name = arena_strdup(r->a, method);
    if (!r->method_name)
        return -ENOMEM;
    if (strlen(r->query_raw) > r->app->cfg.max_query_bytes)
        return http_error(r, 414, "query string longer than %llu bytes",
                          (unsigned long long)r->app->cfg.max_query_bytes);
    const char *bad_key = NULL;
    int qr = query_parse(r->a, r->query_raw, &r->query, &bad_key);
    if (qr == -E2BIG)
        return http_error(r, 400, "too many query parameters (at most %d)", QUERY_MAX_PARAMS);
    if (qr < 0)
        return http_error(r, 400, "malformed percent-encoding (or %%00) in the query%s",
                          bad_key ? "" : "");
    unsigned st;
    const char *why = "";
    r->route = route_match(r->a, r->raw_path, &r->path, r->param, &st, &why);
    if (!r->route) {
        if (!r->path)
            r->path = "(malformed)";
        return http_error(r, st, "%s", why);
    }
    if (!method_allowed(r->route, r->method))
        return send_405(r);
    switch (r->method) {
    case HTTP_OPTIONS:
        return answer_options(r);
    case HTTP_GET:
    case HTTP_HEAD:
        /* every object answered before this request is in the index */
        if (!r->route->no_index)
            ingest_wait_visible(r->app->ingest);
        return r->route->get(r);
    case HTTP_DELETE:
        ingest_wait_visible(r->app->ingest);
        return r->route->del(r);
    case HTTP_POST:
        r->upload_started = true;
        return r->route->post_begin(r);
    default:
        return send_405(r);
    }
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *con, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls)
{
    struct http_server *s = cls;
    (void)url;
    (void)version;
    struct req *r = *req_cls;
    if (!r) {
        /* no URI callback happened (should not): refuse cleanly */
        return MHD_NO;
    }
    int rc = 0;
    if (!r->conn) {
        /* first call: headers are in. MHD closes the connection after a
         * response queued in this call, so requests without a body start on
         * the second call (keep-alive); POST starts here, so that a refused
         * upload (415, 413 by Content-Length...) is answered before its body
         * is read. */
        r->conn = con;
        struct conn_track *t = track_of(con);
        set_phase(t, PHASE_BUSY);
        enum http_method m = parse_method(method);
        if (m == HTTP_GET || m == HTTP_HEAD || m == HTTP_DELETE || m == HTTP_OPTIONS)
            return MHD_YES;
    }
    if (!r->started) {
        r->started = true;
        rc = start(r, method);
        if (rc < 0 && !r->responded)
            http_error(r, http_status_from_err(rc), "%s",
                       rc == -ENOMEM ? "out of memory" : "request failed");
        (void)s;
        if (r->method != HTTP_GET && r->method != HTTP_HEAD && r->method != HTTP_DELETE &&
            r->method != HTTP_OPTIONS) {
            r->in_body = true; /* from now on MHD cannot queue until the body ends */
            set_phase(track_of(con), PHASE_BODY);
            return MHD_YES;
        }
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->upload_bytes += n;
        struct conn_track *t = track_of(con);
        if (t)
            atomic_fetch_add(&t->body_bytes, n);
        if (r->responded || r->deferred_status) {
            /* refused: drain a bounded amount so the answer can be sent,
             * then give up on the connection */
            if (r->upload_bytes > r->app->cfg.max_body_bytes + ((uint64_t)64 << 20))
                return MHD_NO;
            return MHD_YES;
        }
        if (r->upload_bytes > r->app->cfg.max_body_bytes) {
            http_error(r, 413, "request body larger than %llu bytes",
                       (unsigned long long)r->app->cfg.max_body_bytes);
            return MHD_YES;
        }
        if (r->route && r->route->post_data) {
            rc = r->route->post_data(r, (const uint8_t *)upload_data, n);
            if (rc < 0 && !r->responded && !r->deferred_status)
                http_error(r, http_status_from_err(rc), "upload failed");
        }
        return MHD_YES;
    }
    r->in_body = false;
    set_phase(track_of(con), PHASE_BUSY);
    if (r->deferred_status && !r->responded) {
        send_error(r, r->deferred_status, r->deferred_msg);
        return MHD_YES;
    }
    if (!r->responded && r->method == HTTP_POST && r->route && r->route->post_end) {
        rc = r->route->post_end(r);
        if (rc < 0 && !r->responded)
            http_error(r, http_status_from_err(rc), "request failed");
    }
    if (!r->responded) {
        /* a handler that queued nothing is a bug: never leave a client hanging */
        http_error(r, 500, "no response was produced");
    }
    return MHD_YES;
}

/* Writes the path for the access log: the decoded path, and of the query
 * only the parameter names (values may carry patient names or IDs). */
static void log_access(struct req *r)
{
    char q[512];
    size_t n = 0;
    q[0] = 0;
    for (unsigned i = 0; i < r->query.n && n < sizeof(q) - 70; i++) {
        int w = snprintf(q + n, sizeof(q) - n, "%c%.60s=", i ? '&' : '?', r->query.p[i].key);
        if (w > 0)
            n += (size_t)w;
    }
    log_line("%llu %s %s%s %u %llu %.1fms", (unsigned long long)r->id, r->method_name,
             r->path ? r->path : (r->raw_path ? "(unrouted)" : "?"), q, r->status,
             (unsigned long long)r->bytes_out, ms_since(&r->t0));
}

static void completed_cb(void *cls, struct MHD_Connection *con, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req *r = *req_cls;
    if (!r)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status < 400) {
        if (!r->status)
            r->status = 499; /* client went away / timeout before an answer */
    }
    if (s->app->cfg.access_log)
        log_access(r);
    set_phase(track_of(con), PHASE_HEADERS); /* waiting for the next request */
    req_free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

static void conn_cb(void *cls, struct MHD_Connection *con, void **socket_context,
                    enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn_track *t = calloc(1, sizeof(*t));
        if (!t)
            return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->fd = ci ? ci->connect_fd : -1;
        set_phase(t, PHASE_HEADERS);
        pthread_mutex_lock(&s->conns_lock);
        t->next = s->conns;
        if (s->conns)
            s->conns->prev = t;
        s->conns = t;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn_track *t = *socket_context;
        if (!t)
            return;
        pthread_mutex_lock(&s->conns_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&s->conns_lock);
        free(t);
        *socket_context = NULL;
    }
}

/* Cuts connections that send their headers too slowly (slowloris) or
 * whose upload stalls below the minimum rate: one thread each would
 * otherwise be held forever. The fd is shut down, not closed: the
 * connection's own thread sees the error and cleans up. */
static void *watchdog_main(void *arg)
{
    struct http_server *s = arg;
    const struct config *c = &s->app->cfg;
    while (!atomic_load(&s->stopping)) {
        struct timespec d = {0, 250 * 1000 * 1000};
        nanosleep(&d, NULL);
        int64_t now = mono_ms();
        pthread_mutex_lock(&s->conns_lock);
        for (struct conn_track *t = s->conns; t; t = t->next) {
            if (t->cut || t->fd < 0)
                continue;
            int ph = atomic_load(&t->phase);
            int64_t since = atomic_load(&t->since_ms);
            if (ph == PHASE_HEADERS && c->header_timeout_s &&
                now - since > (int64_t)c->header_timeout_s * 1000) {
                t->cut = true;
                shutdown(t->fd, SHUT_RDWR);
                log_debug("http: cut a connection: no complete request within %us",
                          c->header_timeout_s);
            } else if (ph == PHASE_BODY && c->min_upload_rate) {
                uint64_t b = atomic_load(&t->body_bytes);
                if (t->mark_ms == 0 || t->mark_ms < since) {
                    t->mark_ms = now;
                    t->mark_bytes = b;
                } else if (now - t->mark_ms >= 10000) {
                    if (b - t->mark_bytes < (uint64_t)c->min_upload_rate * 10) {
                        t->cut = true;
                        shutdown(t->fd, SHUT_RDWR);
                        log_info("http: cut an upload slower than %u bytes/s", c->min_upload_rate);
                    }
                    t->mark_ms = now;
                    t->mark_bytes = b;
                }
            }
        }
        pthread_mutex_unlock(&s->conns_lock);
    }
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    log_debug("http: %s", line);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                        char *err, size_t err_cap)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        snprintf(err, err_cap, "listen must be HOST:PORT, got \"%s\"", listen);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof(host)) {
        snprintf(err, err_cap, "listen host too long");
        return -EINVAL;
    }
    memcpy(host, listen, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gr = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (gr != 0 || !res) {
        snprintf(err, err_cap, "cannot resolve listen address \"%s\": %s", listen,
                 gai_strerror(gr));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int http_start(struct app *app, struct http_server **out, char *err, size_t err_cap)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->app = app;
    pthread_mutex_init(&s->conns_lock, NULL);
    struct sockaddr_storage ss;
    socklen_t sl;
    int r = parse_listen(app->cfg.listen, &ss, &sl, err, err_cap);
    if (r < 0) {
        free(s);
        return r;
    }
    /* 1 MiB like the ingest threads: the last part of a STOW-RS request is
     * parsed in its connection's thread (nested sequences recurse) */
    enum { CONN_STACK = 1024 * 1024 };
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    size_t mem = (size_t)app->cfg.max_header_bytes;
    if (mem < 8192)
        mem = 8192;
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, s, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
        MHD_OPTION_NOTIFY_CONNECTION, conn_cb, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)app->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg.connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)CONN_STACK, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, err_cap, "cannot listen on %s (address in use or not permitted)",
                 app->cfg.listen);
        free(s);
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        MHD_stop_daemon(s->d);
        free(s);
        snprintf(err, err_cap, "cannot start the connection watchdog");
        return -EAGAIN;
    }
    g_server = s;
    *out = s;
    return 0;
}

unsigned http_port(const struct http_server *s)
{
    return s->port;
}

void http_stop(struct http_server *s, unsigned grace_s)
{
    if (!s)
        return;
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    /* let in-flight requests finish, up to grace_s */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&s->active) > 0 && ms_since(&t0) < grace_s * 1000.0) {
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    if (atomic_load(&s->active) > 0)
        log_warn("shutdown: %d request(s) still running after %us; closing them",
                 (int)atomic_load(&s->active), grace_s);
    MHD_stop_daemon(s->d);
    atomic_store(&s->stopping, true);
    pthread_join(s->watchdog, NULL);
    pthread_mutex_destroy(&s->conns_lock);
    g_server = NULL;
    free(s);
}
