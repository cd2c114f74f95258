/* yyload.c - the benchmark's HTTP/1.1 load client (keep-alive, one blocking
 * connection per thread, no pipelining).
 *
 *   yyload -p PORT -f REQFILE [-c CONNS] [-d SECONDS] [-n REQUESTS] [--once]
 *          [-h "Header: value"]... [--ct CONTENT-TYPE] [--multipart BOUNDARY]
 *          [--host 127.0.0.1] [--lat-out FILE]
 *
 * REQFILE has one request per line: "GET /path", or "POST /path FILE..."
 * whose body is the FILE (Content-Type from --ct) or, with --multipart, a
 * multipart/related body with one application/dicom part per FILE (--ct
 * must then name the same boundary). Threads take lines in turn (a shared
 * counter), cycling through the file; --once sends every line exactly once.
 * -d stops after SECONDS, -n after REQUESTS requests (whichever first).
 * Bodies go out with sendfile(2) and responses are read and discarded, so
 * the client copies as little as possible. Latency = first byte of the
 * request written -> last byte of the response read.
 *
 * Prints one JSON object: requests, ok (2xx), status counts, elapsed_s, rps
 * (2xx per second), bytes_in (response body bytes), bytes_out (bytes of the
 * FILEs sent), latency percentiles in ms (2xx only), and the client's own
 * CPU time (getrusage), to show the client was not the bottleneck.
 * --lat-out writes every 2xx latency (ms, sorted) so runs can be merged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct line {
    char *method, *path;
    char **files; /* POST body: one file, or the parts of a multipart body */
    unsigned n_files;
};

#define MAX_FILES 1024

static struct line *lines;
static size_t n_lines;
static const char *host = "127.0.0.1";
static int port;
static char extra_headers[8192];
static const char *content_type;
static const char *boundary; /* --multipart: wrap the files as parts */
static double duration_s;
static uint64_t max_requests;
static int once;
static atomic_uint_fast64_t next_req;
static const char *lat_out; /* --lat-out FILE: every 2xx latency in ms, one per line */
static double t_start;

struct stats {
    uint64_t requests, ok, bytes_in, bytes_out, reconnects;
    uint64_t status[600];
    uint64_t other_status;
    double *lat;
    size_t n_lat, cap_lat;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *m)
{
    fprintf(stderr, "yyload: %s: %s\n", m, strerror(errno));
    exit(2);
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "yyload: bad host %s\n", host);
        exit(2);
    }
    for (int i = 0; i < 50; i++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        if (errno != ECONNREFUSED && errno != EAGAIN)
            break;
        usleep(20000);
    }
    die("connect");
    return -1;
}

static int write_all(int fd, const char *p, size_t n, int more)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* reads one response; returns status (>0), or -1 if the connection failed
 * before any byte of the response arrived (the caller may retry), -2 after. */
struct conn {
    int fd;
    char buf[1 << 18];
    size_t len; /* bytes in buf not yet consumed */
};

static ssize_t fill(struct conn *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            c->len += (size_t)r;
        return r;
    }
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* discards n body bytes */
static int skip_bytes(struct conn *c, uint64_t n)
{
    while (n) {
        if (c->len == 0) {
            ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            c->len = (size_t)r;
        }
        size_t k = c->len < n ? c->len : (size_t)n;
        consume(c, k);
        n -= k;
    }
    return 0;
}

static int read_line(struct conn *c, char *out, size_t cap)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n", 2);
        if (e) {
            size_t k = (size_t)(e - c->buf);
            if (k >= cap)
                return -1;
            memcpy(out, c->buf, k);
            out[k] = 0;
            consume(c, k + 2);
            return 0;
        }
        if (fill(c) <= 0)
            return -1;
    }
}

static int read_response(struct conn *c, int head, uint64_t *body_bytes, int *close_after)
{
    char *end;
    *close_after = 0;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        ssize_t r = fill(c);
        if (r <= 0)
            return c->len == 0 ? -1 : -2;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
        return -2;
    int64_t clen = -1;
    int chunked = 0;
    char *p = memmem(c->buf, hlen, "\r\n", 2);
    while (p && p + 2 < c->buf + hlen - 2) {
        p += 2;
        char *q = memmem(p, (size_t)(c->buf + hlen - p), "\r\n", 2);
        if (!q)
            break;
        size_t k = (size_t)(q - p);
        if (k > 15 && !strncasecmp(p, "content-length:", 15))
            clen = strtoll(p + 15, NULL, 10);
        else if (k > 18 && !strncasecmp(p, "transfer-encoding:", 18) && memmem(p, k, "chunked", 7))
            chunked = 1;
        else if (k > 11 && !strncasecmp(p, "connection:", 11) && memmem(p, k, "close", 5))
            *close_after = 1;
        p = q;
    }
    consume(c, hlen);
    uint64_t got = 0;
    if (head || status == 204 || status == 304 || (status >= 100 && status < 200)) {
        /* no body */
    } else if (chunked) {
        char l[128];
        for (;;) {
            if (read_line(c, l, sizeof(l)) < 0)
                return -2;
            uint64_t n = strtoull(l, NULL, 16);
            if (n == 0) {
                /* trailers until an empty line */
                do {
                    if (read_line(c, l, sizeof(l)) < 0)
                        return -2;
                } while (l[0]);
                break;
            }
            if (skip_bytes(c, n) < 0 || skip_bytes(c, 2) < 0)
                return -2;
            got += n;
        }
    } else if (clen >= 0) {
        if (skip_bytes(c, (uint64_t)clen) < 0)
            return -2;
        got = (uint64_t)clen;
    } else {
        /* until close */
        for (;;) {
            got += c->len;
            c->len = 0;
            ssize_t r = fill(c);
            if (r <= 0)
                break;
        }
        *close_after = 1;
    }
    *body_bytes = got;
    return status;
}

static void add_lat(struct stats *s, double v)
{
    if (s->n_lat == s->cap_lat) {
        s->cap_lat = s->cap_lat ? s->cap_lat * 2 : 4096;
        s->lat = realloc(s->lat, s->cap_lat * sizeof(double));
        if (!s->lat)
            die("realloc");
    }
    s->lat[s->n_lat++] = v;
}

static void *worker(void *arg)
{
    struct stats *s = arg;
    struct conn *c = malloc(sizeof(*c));
    if (!c)
        die("malloc");
    c->fd = connect_server();
    c->len = 0;
    char hdr[16384];
    for (;;) {
        if (duration_s > 0 && now() - t_start >= duration_s)
            break;
        uint64_t i = atomic_fetch_add(&next_req, 1);
        if ((once && i >= n_lines) || (max_requests && i >= max_requests))
            break;
        struct line *ln = &lines[i % n_lines];
        int bfd[MAX_FILES];
        off_t blen[MAX_FILES];
        off_t total = 0;
        char pre[256], post[128];
        int pre_n = 0, post_n = 0;
        if (boundary) {
            pre_n = snprintf(pre, sizeof(pre), "--%s\r\nContent-Type: application/dicom\r\n\r\n",
                             boundary);
            post_n = snprintf(post, sizeof(post), "--%s--\r\n", boundary);
        }
        for (unsigned k = 0; k < ln->n_files; k++) {
            bfd[k] = open(ln->files[k], O_RDONLY | O_CLOEXEC);
            struct stat st;
            if (bfd[k] < 0 || fstat(bfd[k], &st) < 0)
                die(ln->files[k]);
            blen[k] = st.st_size;
            total += st.st_size + (boundary ? pre_n + 2 : 0);
        }
        if (boundary && ln->n_files)
            total += post_n;
        int n = snprintf(hdr, sizeof(hdr), "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s", ln->method,
                         ln->path, host, port, extra_headers);
        if (ln->n_files)
            n += snprintf(hdr + n, sizeof(hdr) - (size_t)n,
                          "Content-Type: %s\r\nContent-Length: %lld\r\n",
                          content_type ? content_type : "application/octet-stream",
                          (long long)total);
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "\r\n");
        int head = !strcmp(ln->method, "HEAD");
        for (int attempt = 0;; attempt++) {
            double t0 = now();
            int bad = write_all(c->fd, hdr, (size_t)n, ln->n_files != 0) < 0;
            for (unsigned k = 0; !bad && k < ln->n_files; k++) {
                if (boundary && write_all(c->fd, pre, (size_t)pre_n, 1) < 0) {
                    bad = 1;
                    break;
                }
                off_t off = 0;
                while (off < blen[k]) {
                    ssize_t w = sendfile(c->fd, bfd[k], &off, (size_t)(blen[k] - off));
                    if (w <= 0) {
                        if (w < 0 && errno == EINTR)
                            continue;
                        bad = 1;
                        break;
                    }
                }
                if (!bad && boundary)
                    bad = write_all(c->fd, "\r\n", 2, 1) < 0;
            }
            if (!bad && boundary && ln->n_files)
                bad = write_all(c->fd, post, (size_t)post_n, 0) < 0;
            uint64_t body = 0;
            int close_after = 0;
            int st = bad ? -1 : read_response(c, head, &body, &close_after);
            if (st == -1 && attempt < 3 && c->len == 0) {
                /* the server closed an idle keep-alive connection: retry */
                close(c->fd);
                c->fd = connect_server();
                c->len = 0;
                s->reconnects++;
                continue;
            }
            double t1 = now();
            s->requests++;
            if (st < 0) {
                s->other_status++;
                close(c->fd);
                c->fd = connect_server();
                c->len = 0;
                s->reconnects++;
                break;
            }
            if (st < 600)
                s->status[st]++;
            else
                s->other_status++;
            if (st >= 200 && st < 300) {
                s->ok++;
                s->bytes_in += body;
                for (unsigned k = 0; k < ln->n_files; k++)
                    s->bytes_out += (uint64_t)blen[k];
                add_lat(s, (t1 - t0) * 1e3);
            }
            if (close_after) {
                close(c->fd);
                c->fd = connect_server();
                c->len = 0;
                s->reconnects++;
            }
            break;
        }
        for (unsigned k = 0; k < ln->n_files; k++)
            close(bfd[k]);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (!n)
        return 0;
    /* nearest rank */
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static void load_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    size_t cap = 0;
    char *l = NULL;
    size_t lc = 0;
    ssize_t r;
    while ((r = getline(&l, &lc, f)) >= 0) {
        while (r > 0 && (l[r - 1] == '\n' || l[r - 1] == '\r'))
            l[--r] = 0;
        if (!r || l[0] == '#')
            continue;
        if (n_lines == cap) {
            cap = cap ? cap * 2 : 1024;
            lines = realloc(lines, cap * sizeof(*lines));
            if (!lines)
                die("realloc");
        }
        char *save = NULL;
        char *dup = strdup(l);
        struct line *ln = &lines[n_lines];
        ln->method = strtok_r(dup, " ", &save);
        ln->path = strtok_r(NULL, " ", &save);
        ln->files = NULL;
        ln->n_files = 0;
        char *tok;
        while ((tok = strtok_r(NULL, " ", &save))) {
            if (ln->n_files == MAX_FILES) {
                fprintf(stderr, "yyload: more than %d files on a line\n", MAX_FILES);
                exit(2);
            }
            ln->files = realloc(ln->files, (ln->n_files + 1) * sizeof(char *));
            if (!ln->files)
                die("realloc");
            ln->files[ln->n_files++] = tok;
        }
        if (!ln->method || !ln->path) {
            fprintf(stderr, "yyload: bad line: %s\n", l);
            exit(2);
        }
        n_lines++;
    }
    free(l);
    fclose(f);
    if (!n_lines) {
        fprintf(stderr, "yyload: %s has no requests\n", path);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    int conns = 1;
    const char *file = NULL;
    size_t eh = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--once")) {
            once = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "yyload: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-p"))
            port = atoi(v);
        else if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "-c"))
            conns = atoi(v);
        else if (!strcmp(a, "-d"))
            duration_s = atof(v);
        else if (!strcmp(a, "-n"))
            max_requests = strtoull(v, NULL, 10);
        else if (!strcmp(a, "-f"))
            file = v;
        else if (!strcmp(a, "--lat-out"))
            lat_out = v;
        else if (!strcmp(a, "--multipart"))
            boundary = v;
        else if (!strcmp(a, "--ct"))
            content_type = v;
        else if (!strcmp(a, "-h")) {
            int w = snprintf(extra_headers + eh, sizeof(extra_headers) - eh, "%s\r\n", v);
            if (w < 0 || (size_t)w >= sizeof(extra_headers) - eh) {
                fprintf(stderr, "yyload: too many headers\n");
                return 2;
            }
            eh += (size_t)w;
        } else {
            fprintf(stderr, "yyload: unknown option %s\n", a);
            return 2;
        }
    }
    if (!port || !file || conns < 1 || (!once && !max_requests && duration_s <= 0)) {
        fprintf(stderr, "usage: yyload -p PORT -f REQFILE [-c N] (-d S | -n N | --once) "
                        "[-h HEADER]... [--ct TYPE] [--multipart BOUNDARY] [--host ADDR] "
                        "[--lat-out FILE]\n");
        return 2;
    }
    load_file(file);
    struct stats *st = calloc((size_t)conns, sizeof(*st));
    pthread_t *th = calloc((size_t)conns, sizeof(*th));
    if (!st || !th)
        die("calloc");
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    t_start = now();
    for (int i = 0; i < conns; i++)
        if (pthread_create(&th[i], NULL, worker, &st[i]))
            die("pthread_create");
    for (int i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    double el = now() - t_start;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    struct stats t = {0};
    for (int i = 0; i < conns; i++) {
        t.requests += st[i].requests;
        t.ok += st[i].ok;
        t.bytes_in += st[i].bytes_in;
        t.bytes_out += st[i].bytes_out;
        t.reconnects += st[i].reconnects;
        t.other_status += st[i].other_status;
        for (int k = 0; k < 600; k++)
            t.status[k] += st[i].status[k];
        for (size_t k = 0; k < st[i].n_lat; k++)
            add_lat(&t, st[i].lat[k]);
    }
    if (t.n_lat)
        qsort(t.lat, t.n_lat, sizeof(double), cmp_d);
    double sum = 0;
    for (size_t k = 0; k < t.n_lat; k++)
        sum += t.lat[k];
    if (lat_out) {
        FILE *lf = fopen(lat_out, "w");
        if (!lf)
            die(lat_out);
        for (size_t k = 0; k < t.n_lat; k++)
            fprintf(lf, "%.4f\n", t.lat[k]);
        fclose(lf);
    }
    printf("{\"requests\": %llu, \"ok\": %llu, \"status\": {", (unsigned long long)t.requests,
           (unsigned long long)t.ok);
    int first = 1;
    for (int k = 0; k < 600; k++)
        if (t.status[k]) {
            printf("%s\"%d\": %llu", first ? "" : ", ", k, (unsigned long long)t.status[k]);
            first = 0;
        }
    if (t.other_status)
        printf("%s\"failed\": %llu", first ? "" : ", ", (unsigned long long)t.other_status);
    printf("}, \"connections\": %d, \"reconnects\": %llu, \"elapsed_s\": %.4f, \"rps\": %.3f, "
           "\"bytes_in\": %llu, \"bytes_out\": %llu, ",
           conns, (unsigned long long)t.reconnects, el, el > 0 ? (double)t.ok / el : 0.0,
           (unsigned long long)t.bytes_in, (unsigned long long)t.bytes_out);
    printf("\"lat_ms\": {\"min\": %.4f, \"p50\": %.4f, \"p90\": %.4f, \"p95\": %.4f, "
           "\"p99\": %.4f, \"max\": %.4f, \"mean\": %.4f}, ",
           t.n_lat ? t.lat[0] : 0.0, pct(t.lat, t.n_lat, 50), pct(t.lat, t.n_lat, 90),
           pct(t.lat, t.n_lat, 95), pct(t.lat, t.n_lat, 99), t.n_lat ? t.lat[t.n_lat - 1] : 0.0,
           t.n_lat ? sum / (double)t.n_lat : 0.0);
    printf("\"client_cpu_s\": %.4f, \"client_cpu_pct_of_one_core\": %.2f}\n", cpu,
           el > 0 ? 100.0 * cpu / el : 0.0);
    return 0;
}
