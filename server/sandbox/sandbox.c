/* sandbox.c - see sandbox.h. */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/sandbox.h"
#include "core/banned.h"

#define MAGIC 0x59594344u /* "YYCD" */
#define MAX_WORKERS 16
#define MAX_IN ((uint64_t)1 << 30)
#define WORKER_AS_LIMIT ((rlim_t)4 << 30)

/* AddressSanitizer reserves terabytes of shadow memory at start-up, so an
 * address-space limit makes every later allocation fail in a sanitized
 * build; there the limit is left off. */
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_LIMIT_AS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_LIMIT_AS 0
#endif
#endif
#ifndef WORKER_LIMIT_AS
#define WORKER_LIMIT_AS 1
#endif

extern char **environ;

struct worker {
    pid_t pid;
    int fd;
    bool busy;
};

struct sandbox {
    char exe[4096];
    unsigned timeout_ms;
    unsigned n;
    struct worker w[MAX_WORKERS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned restarts;
};

/* The request: everything codec_decode() takes. */
struct req_hdr {
    uint32_t magic;
    uint16_t rows, cols, spp, bits_alloc, bits_stored, high_bit, pixrep, planar;
    uint8_t big_endian, float_data;
    uint16_t first_bit;
    char ts[68];
    char photometric[24];
    uint64_t out_cap;
    uint64_t len;
};

struct rep_hdr {
    uint32_t magic;
    int32_t rc;
    uint64_t len;
    char photometric[20];
    uint16_t bits_alloc, bits_stored, pixrep;
    char err[256];
};

bool sandbox_wanted(const char *ts)
{
    static const char *const risky[] = {
        "1.2.840.10008.1.2.4.51",  "1.2.840.10008.1.2.4.57",  "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",  "1.2.840.10008.1.2.4.81",  "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",  "1.2.840.10008.1.2.4.92",  "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",
    };
    for (size_t i = 0; i < YY_ARRAY_LEN(risky); i++)
        if (!strcmp(ts, risky[i]))
            return true;
    return false;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -EIO;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads n bytes; with a deadline (ms since epoch of CLOCK_MONOTONIC) when
 * deadline > 0. -ETIMEDOUT, -EIO (EOF / error). */
static int read_all(int fd, void *p, size_t n, int64_t deadline)
{
    uint8_t *b = p;
    while (n) {
        if (deadline) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            int64_t now = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
            if (now >= deadline)
                return -ETIMEDOUT;
            struct pollfd pfd = {fd, POLLIN, 0};
            int pr = poll(&pfd, 1, (int)(deadline - now));
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr == 0)
                return -ETIMEDOUT;
            if (pr < 0)
                return -EIO;
        }
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EIO;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int spawn(struct sandbox *s, struct worker *w)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* the worker's end becomes fd 3 (dup2 clears CLOEXEC on the copy) */
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    char *argv[] = {s->exe, (char *)"codec-worker", NULL};
    pid_t pid;
    int r = posix_spawn(&pid, s->exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (r != 0) {
        close(sv[0]);
        return -r;
    }
    w->pid = pid;
    w->fd = sv[0];
    w->busy = false;
    return 0;
}

static void kill_worker(struct worker *w)
{
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        (void)waitpid(w->pid, NULL, 0);
    }
    if (w->fd >= 0)
        close(w->fd);
    w->pid = -1;
    w->fd = -1;
}

int sandbox_start(const char *exe, unsigned n, unsigned timeout_ms, struct sandbox **out)
{
    if (access(exe, X_OK) < 0)
        return -errno;
    struct sandbox *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    ssize_t l = readlink(exe, s->exe, sizeof(s->exe) - 1);
    if (l > 0)
        s->exe[l] = 0;
    else
        snprintf(s->exe, sizeof(s->exe), "%s", exe);
    s->n = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
    s->timeout_ms = timeout_ms ? timeout_ms : 20000;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    /* workers start when first needed: an idle server has none */
    for (unsigned i = 0; i < s->n; i++) {
        s->w[i].pid = -1;
        s->w[i].fd = -1;
    }
    *out = s;
    return 0;
}

void sandbox_stop(struct sandbox *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        kill_worker(&s->w[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

unsigned sandbox_restarts(struct sandbox *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    unsigned n = s->restarts;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static struct worker *acquire(struct sandbox *s)
{
    pthread_mutex_lock(&s->lock);
    for (;;) {
        for (unsigned i = 0; i < s->n; i++) {
            if (!s->w[i].busy) {
                s->w[i].busy = true;
                pthread_mutex_unlock(&s->lock);
                return &s->w[i];
            }
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
}

static void release(struct sandbox *s, struct worker *w, bool broken)
{
    if (broken) {
        kill_worker(w);
        int r = spawn(s, w);
        if (r < 0) /* tried again when the slot is next used */
            log_error("sandbox: cannot start a codec worker: %s", strerror(-r));
    }
    pthread_mutex_lock(&s->lock);
    if (broken)
        s->restarts++;
    w->busy = false;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int sandbox_decode(struct sandbox *s, const char *ts_uid, const struct codec_image *img,
                   const uint8_t *data, size_t len, unsigned first_bit, uint8_t *out,
                   size_t out_cap, struct codec_out *info, char *err, size_t err_cap)
{
    if (len > MAX_IN || strlen(ts_uid) >= sizeof(((struct req_hdr *)0)->ts))
        return -E2BIG;
    struct req_hdr h;
    memset(&h, 0, sizeof(h));
    h.magic = MAGIC;
    h.rows = img->rows;
    h.cols = img->cols;
    h.spp = img->spp;
    h.bits_alloc = img->bits_alloc;
    h.bits_stored = img->bits_stored;
    h.high_bit = img->high_bit;
    h.pixrep = img->pixrep;
    h.planar = img->planar;
    h.big_endian = img->big_endian;
    h.float_data = img->float_data;
    h.first_bit = (uint16_t)first_bit;
    snprintf(h.ts, sizeof(h.ts), "%s", ts_uid);
    snprintf(h.photometric, sizeof(h.photometric), "%s", img->photometric ? img->photometric : "");
    h.out_cap = out_cap;
    h.len = len;
    struct worker *w = acquire(s);
    if (w->fd < 0) {
        /* not started yet, or its last start failed: start it now */
        int sr = spawn(s, w);
        if (sr < 0) {
            snprintf(err, err_cap, "no codec worker could be started (%s)", strerror(-sr));
            release(s, w, false);
            return -EAGAIN;
        }
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t deadline = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000 + s->timeout_ms;
    struct rep_hdr rep;
    int r = write_all(w->fd, &h, sizeof(h));
    if (r == 0)
        r = write_all(w->fd, data, len);
    if (r == 0)
        r = read_all(w->fd, &rep, sizeof(rep), deadline);
    if (r == 0 && (rep.magic != MAGIC || (rep.rc == 0 && rep.len > out_cap)))
        r = -EIO;
    if (r == 0 && rep.rc == 0)
        r = read_all(w->fd, out, rep.len, deadline);
    if (r < 0) {
        /* crashed, hung or garbled: the worker is replaced, the frame fails */
        snprintf(err, err_cap, "the %s decoder %s on this frame", ts_uid,
                 r == -ETIMEDOUT ? "did not finish in time" : "crashed");
        log_warn("sandbox: a codec worker %s (%s); replaced",
                 r == -ETIMEDOUT ? "timed out" : "died", ts_uid);
        release(s, w, true);
        return -EBADMSG;
    }
    release(s, w, false);
    if (rep.rc < 0) {
        rep.err[sizeof(rep.err) - 1] = 0;
        snprintf(err, err_cap, "%s", rep.err);
        return rep.rc;
    }
    memset(info, 0, sizeof(*info));
    info->len = rep.len;
    memcpy(info->photometric, rep.photometric, sizeof(info->photometric));
    info->photometric[sizeof(info->photometric) - 1] = 0;
    info->bits_alloc = rep.bits_alloc;
    info->bits_stored = rep.bits_stored;
    info->pixrep = rep.pixrep;
    return 0;
}

int sandbox_worker_main(int fd)
{
    /* No PR_SET_PDEATHSIG: it fires when the *thread* that started the
     * worker ends, and workers are started by request threads. A worker
     * notices the server's end as EOF on its socket instead. */
    if (WORKER_LIMIT_AS) {
        struct rlimit rl = {WORKER_AS_LIMIT, WORKER_AS_LIMIT};
        setrlimit(RLIMIT_AS, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        struct req_hdr h;
        if (read_all(fd, &h, sizeof(h), 0) < 0 || h.magic != MAGIC || h.len > MAX_IN ||
            h.out_cap > MAX_IN * 4)
            return 0;
        uint8_t *in = malloc(h.len ? h.len : 1);
        uint8_t *out = malloc(h.out_cap ? h.out_cap : 1);
        if (!in || !out || read_all(fd, in, h.len, 0) < 0) {
            free(in);
            free(out);
            return 1;
        }
        h.ts[sizeof(h.ts) - 1] = 0;
        h.photometric[sizeof(h.photometric) - 1] = 0;
        struct codec_image img = {h.rows,   h.cols,      h.spp,           h.bits_alloc,
                                  h.bits_stored, h.high_bit, h.pixrep,       h.planar,
                                  h.photometric, h.big_endian != 0, h.float_data != 0};
        struct codec_out info;
        memset(&info, 0, sizeof(info));
        struct rep_hdr rep;
        memset(&rep, 0, sizeof(rep));
        rep.magic = MAGIC;
        rep.rc = codec_decode(h.ts, &img, in, h.len, h.first_bit, out, h.out_cap, &info, rep.err,
                              sizeof(rep.err));
        if (rep.rc == 0) {
            rep.len = info.len;
            memcpy(rep.photometric, info.photometric, sizeof(rep.photometric));
            rep.bits_alloc = info.bits_alloc;
            rep.bits_stored = info.bits_stored;
            rep.pixrep = info.pixrep;
        }
        int r = write_all(fd, &rep, sizeof(rep));
        if (r == 0 && rep.rc == 0)
            r = write_all(fd, out, info.len);
        free(in);
        free(out);
        if (r < 0)
            return 1;
    }
}
