/*
 * main.c - the yingyun command: serve, import, reindex.
 *
 * Owns process-wide setup (config, signals, logging) and the order of
 * start and stop. Everything else is in the modules it wires together.
 */
#include "core/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "core/log.h"
#include "dicomweb/ingest.h"
#include "dicomweb/inst_cache.h"
#include "dicomweb/meta_disk.h"
#include "dicomweb/recover.h"
#include "http/http.h"
#include "index/index.h"
#include "render/cache.h"
#include "sandbox/sandbox.h"
#include "dicomweb/transcode.h"
#include "store/store.h"
#include "yy_config.h"
#include "core/banned.h"

#ifndef YY_WEB_DIR
#define YY_WEB_DIR ""
#endif

static void usage(FILE *f)
{
    fprintf(f, "Yingyun %s - DICOMweb server and zero-footprint viewer\n\n"
               "usage:\n"
               "  yingyun serve   [--listen HOST:PORT] [--data DIR] [--config FILE] [options]\n"
               "  yingyun import  [--data DIR] [options] PATH...   store files or folders\n"
               "  yingyun reindex [--data DIR]                     rebuild the index from the files\n"
               "  yingyun --help | --version\n\n"
               "options (every one may also be given as \"key = value\" in the config file):\n",
            YY_VERSION);
    for (unsigned i = 0; i < config_key_count(); i++)
        fprintf(f, "  --%-22s %s (default: %s)\n", config_key_name(i), config_key_help(i),
                config_key_default(i)[0] ? config_key_default(i) : "\"\"");
}

static int open_app(struct app *app, bool for_server)
{
    char err[512];
    log_level_parse(app->cfg.log_level, &(enum log_level){LOG_INFO});
    int r = store_open(app->cfg.data, &app->store);
    if (r < 0) {
        log_error("cannot open the data directory %s: %s", app->cfg.data, strerror(-r));
        return r;
    }
    store_set_reserve(app->store, app->cfg.disk_reserve_bytes);
    store_set_direct(app->store, app->cfg.direct_io);
    store_set_one_flush(app->store, app->cfg.one_flush);
    if (for_server)
        log_info("store: %s",
                 store_one_flush(app->store)
                     ? "one flush per new object (file linked first, CRC-32 in its inode)"
                     : "two flushes per new object (file, then its folder)");
    if (for_server && store_syncs_fs(app->store))
        log_info("store: ext4 without a journal: folders made durable with syncfs");
    char path[1100];
    snprintf(path, sizeof(path), "%s/index.db", app->cfg.data);
    r = index_open(path, &app->index, err, sizeof(err));
    if (r < 0) {
        log_error("%s", err);
        return r;
    }
    struct ingest_opts o = {app->cfg.overwrite, for_server && !app->cfg.index_before_ack,
                            app->cfg.index_gather_ms > 60000 ? 60000 : app->cfg.index_gather_ms};
    r = ingest_new(app->store, app->index, &o, &app->ingest);
    if (r < 0)
        return r;
    if (for_server) {
        app->cache = render_cache_new(app->cfg.render_cache_bytes);
        app->meta_cache = render_cache_new(app->cfg.metadata_cache_bytes);
        app->inst_cache = inst_cache_new();
        r = meta_disk_open(app->cfg.data, app->cfg.metadata_disk_cache_bytes, &app->meta_disk);
        if (r < 0)
            log_warn("metadata disk cache off: cannot open %s/cache/metadata (%s)",
                     app->cfg.data, strerror(-r));
        if (app->cfg.web_root[0])
            snprintf(app->web_root, sizeof(app->web_root), "%s", app->cfg.web_root);
        else
            snprintf(app->web_root, sizeof(app->web_root), "%s", YY_WEB_DIR);
    }
    return 0;
}

static int unlink_cb(void *ctx, const char *rel)
{
    return store_unlink(ctx, rel);
}

static void close_app(struct app *app)
{
    render_cache_free(app->cache);
    app->cache = NULL;
    meta_disk_close(app->meta_disk);
    app->meta_disk = NULL;
    render_cache_free(app->meta_cache);
    inst_cache_free(app->inst_cache);
    app->inst_cache = NULL;
    app->meta_cache = NULL;
    ingest_free(app->ingest);
    index_close(app->index);
    store_close(app->store);
}

/* Indexes again what an unclean stop took from the index (recover.h). */
static int recover_index(struct app *app)
{
    struct recover_stats st;
    int r = recover_recent(app->store, app->index, app->ingest, &st);
    if (r < 0)
        log_error("recovery: cannot check the recent objects against the index (%s)",
                  strerror(-r));
    else if (st.indexed || st.failed)
        log_warn("recovery: %lu recent objects checked, %lu indexed again, %lu failed",
                 st.files, st.indexed, st.failed);
    return r;
}

static int cmd_serve(struct app *app)
{
    /* a fixed mmap threshold: large response buffers go back to the system
     * when freed (glibc's dynamic threshold would keep them in the heap
     * after the first large free, and RSS would only grow) */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    /* fixing the mmap threshold also fixes the trim threshold at 128 KiB:
     * every freed frame buffer (~130 KB) at the top of a thread's heap was
     * then given back with madvise, whose TLB shoot-down on the other core
     * and the page faults of the next request cost 8 % of the server's CPU
     * when serving frames. A rendered 512x512 CT frame frees two 512 KiB
     * buffers: with 1 MiB kept, both were given back and faulted in again
     * on every request (228 page faults, 3.8 of its 4.1 ms on a VM whose
     * page faults are slow); each arena (at most 8 per core) now keeps up
     * to 4 MiB free at its top */
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    /* block before any thread starts so that only sigwait() sees them */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int r = open_app(app, true);
    if (r < 0)
        return 1;
    r = index_recover(app->index, unlink_cb, app->store);
    if (r < 0)
        log_warn("could not finish interrupted deletes (%d); will retry at next start", r);
    if (recover_index(app) < 0)
        return 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct sandbox *sb = NULL;
    /* yingyun-codec-worker sits next to this executable */
    char worker[PATH_MAX];
    ssize_t wl = readlink("/proc/self/exe", worker, sizeof(worker) - 32);
    if (wl <= 0)
        wl = 0;
    worker[wl] = 0;
    char *slash = strrchr(worker, '/');
    snprintf(slash ? slash + 1 : worker, 32, "yingyun-codec-worker");
    r = sandbox_start(worker, cores > 2 ? (unsigned)cores : 2, 20000, &sb);
    if (r < 0) {
        log_error("cannot run the codec worker %s: %s", worker, strerror(-r));
        close_app(app);
        return 1;
    }
    transcode_set_sandbox(sb);
    struct http_server *srv;
    char err[512];
    r = http_start(app, &srv, err, sizeof(err));
    if (r < 0) {
        log_error("%s", err);
        sandbox_stop(sb);
        close_app(app);
        return 1;
    }
    char host[256];
    snprintf(host, sizeof(host), "%s", app->cfg.listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = 0;
    if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]"))
        snprintf(host, sizeof(host), "127.0.0.1");
    unsigned port = http_port(srv);
    printf("Yingyun %s listening on %s:%u (data in %s)\n", YY_VERSION, host, port, app->cfg.data);
    printf("  DICOMweb root: http://%s:%u/dicomweb\n", host, port);
    printf("  Viewer:        http://%s:%u/\n", host, port);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping (in-flight requests get %us)", sig, app->cfg.shutdown_grace_s);
    http_stop(srv, app->cfg.shutdown_grace_s);
    transcode_set_sandbox(NULL);
    sandbox_stop(sb);
    close_app(app);
    log_info("stopped cleanly");
    return 0;
}

/* yingyun import: the main thread walks the paths (sorted) into a small
 * queue; import_jobs threads store the files, each through the same ingest
 * path as STOW-RS. Parallel files overlap their fsyncs. */
#define IMPORT_QUEUE 64

struct import_stats {
    struct app *app;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    char *queue[IMPORT_QUEUE];
    unsigned head, count;
    bool walk_done;
    int stop_err; /* -ENOSPC: stop everything */
    unsigned long files, stored, duplicate, failed;
    bool tty;
};

static void import_report(struct import_stats *st, const char *path, const struct ingest_result *res,
                          int outcome, const char *why)
{
    pthread_mutex_lock(&st->mu);
    st->files++;
    if (outcome == INGEST_STORED)
        st->stored++;
    else if (outcome == INGEST_DUPLICATE)
        st->duplicate++;
    else
        st->failed++;
    if (outcome == INGEST_FAILED) {
        if (res)
            fprintf(stderr, "%sfailed: %s: %s (0x%04X)\n", st->tty ? "\n" : "", path, res->reason,
                    res->failure_reason);
        else
            fprintf(stderr, "%sfailed: %s: %s\n", st->tty ? "\n" : "", path, why);
    }
    if (st->tty) {
        fprintf(stderr, "\r%lu files: %lu stored, %lu duplicate, %lu failed", st->files,
                st->stored, st->duplicate, st->failed);
    } else if (st->files % 100 == 0) {
        fprintf(stderr, "%lu files: %lu stored, %lu duplicate, %lu failed\n", st->files,
                st->stored, st->duplicate, st->failed);
    }
    pthread_mutex_unlock(&st->mu);
}

static int import_file(struct import_stats *st, const char *path)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        import_report(st, path, NULL, INGEST_FAILED, strerror(errno));
        return 0;
    }
    struct store_tmp t;
    int r = store_tmp_create(st->app->store, &t);
    if (r < 0) {
        close(in);
        import_report(st, path, NULL, INGEST_FAILED, "cannot create a temp file");
        return r;
    }
    char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        r = store_tmp_write(&t, buf, (size_t)n);
        if (r < 0)
            break;
    }
    close(in);
    if (n < 0 || r < 0) {
        store_tmp_discard(&t);
        import_report(st, path, NULL, INGEST_FAILED, r == -ENOSPC ? "disk full" : "read error");
        return r == -ENOSPC ? r : 0;
    }
    struct ingest_result res;
    r = ingest_tmp(st->app->ingest, &t, NULL, &res);
    import_report(st, path, &res, (int)res.outcome, NULL);
    return r == -ENOSPC ? r : 0;
}

static void *import_worker(void *arg)
{
    struct import_stats *st = arg;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (st->count == 0 && !st->walk_done && !st->stop_err)
            pthread_cond_wait(&st->not_empty, &st->mu);
        if (st->count == 0 || st->stop_err) {
            pthread_mutex_unlock(&st->mu);
            return NULL;
        }
        char *path = st->queue[st->head];
        st->head = (st->head + 1) % IMPORT_QUEUE;
        st->count--;
        pthread_cond_signal(&st->not_full);
        pthread_mutex_unlock(&st->mu);
        int r = import_file(st, path);
        free(path);
        if (r == -ENOSPC) {
            pthread_mutex_lock(&st->mu);
            st->stop_err = r;
            pthread_cond_broadcast(&st->not_full);
            pthread_cond_broadcast(&st->not_empty);
            pthread_mutex_unlock(&st->mu);
        }
    }
}

/* Queues a file for the workers; -ENOSPC once they stopped on a full disk. */
static int import_enqueue(struct import_stats *st, const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&st->mu);
    while (st->count == IMPORT_QUEUE && !st->stop_err)
        pthread_cond_wait(&st->not_full, &st->mu);
    int r = st->stop_err;
    if (r == 0) {
        st->queue[(st->head + st->count) % IMPORT_QUEUE] = copy;
        st->count++;
        pthread_cond_signal(&st->not_empty);
    }
    pthread_mutex_unlock(&st->mu);
    if (r)
        free(copy);
    return r;
}

static int import_path(struct import_stats *st, const char *path, unsigned depth)
{
    struct stat sb;
    if (stat(path, &sb) < 0) {
        import_report(st, path, NULL, INGEST_FAILED, strerror(errno));
        return 0;
    }
    if (S_ISREG(sb.st_mode))
        return import_enqueue(st, path);
    if (!S_ISDIR(sb.st_mode) || depth > 64)
        return 0;
    DIR *d = opendir(path);
    if (!d) {
        import_report(st, path, NULL, INGEST_FAILED, strerror(errno));
        return 0;
    }
    /* sorted, so that imports are reproducible */
    struct dirent **list = NULL;
    closedir(d);
    int n = scandir(path, &list, NULL, alphasort);
    int r = 0;
    for (int i = 0; i < n; i++) {
        if (r == 0 && list[i]->d_name[0] != '.') {
            char child[PATH_MAX];
            int w = snprintf(child, sizeof(child), "%s/%s", path, list[i]->d_name);
            if (w > 0 && (size_t)w < sizeof(child))
                r = import_path(st, child, depth + 1);
        }
        free(list[i]);
    }
    free(list);
    return r;
}

static int cmd_import(struct app *app, int argc, char **argv, const int *pos, int n_pos)
{
    if (n_pos == 0) {
        fprintf(stderr, "import: give one or more files or folders\n");
        return 2;
    }
    if (open_app(app, false) < 0 || recover_index(app) < 0)
        return 1;
    static struct import_stats st;
    st.app = app;
    st.tty = isatty(2) != 0;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.not_empty, NULL);
    pthread_cond_init(&st.not_full, NULL);
    unsigned jobs = app->cfg.import_jobs < 1 ? 1 : app->cfg.import_jobs > 64 ? 64 : app->cfg.import_jobs;
    pthread_t th[64];
    unsigned started = 0;
    for (; started < jobs; started++)
        if (pthread_create(&th[started], NULL, import_worker, &st) != 0)
            break;
    int r = started ? 0 : -EAGAIN;
    for (int i = 0; i < n_pos && r == 0; i++)
        r = import_path(&st, argv[pos[i]], 0);
    pthread_mutex_lock(&st.mu);
    st.walk_done = true;
    pthread_cond_broadcast(&st.not_empty);
    pthread_mutex_unlock(&st.mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (st.stop_err)
        r = st.stop_err;
    for (; st.count; st.count--, st.head = (st.head + 1) % IMPORT_QUEUE)
        free(st.queue[st.head]);
    (void)argc;
    fprintf(stderr, "%simported %lu files: %lu stored, %lu duplicate, %lu failed\n",
            st.tty ? "\n" : "", st.files, st.stored, st.duplicate, st.failed);
    if (r == -ENOSPC)
        fprintf(stderr, "stopped: disk full\n");
    close_app(app);
    return r < 0 ? 1 : (st.failed ? 3 : 0);
}

struct reindex_stats {
    struct app *app;
    unsigned long files, indexed, failed;
};

static int reindex_cb(void *ctx, const char *rel)
{
    struct reindex_stats *st = ctx;
    struct ingest_result res;
    st->files++;
    int r = ingest_existing(st->app->ingest, rel, &res);
    if (res.outcome == INGEST_STORED) {
        st->indexed++;
    } else {
        st->failed++;
        fprintf(stderr, "not indexed: %s: %s\n", rel, res.reason);
    }
    if (st->files % 1000 == 0)
        fprintf(stderr, "%lu files indexed\n", st->indexed);
    return r == -ENOSPC ? r : 0;
}

static int cmd_reindex(struct app *app)
{
    /* a fresh index: the old database is moved aside first, so a failed
     * reindex can be retried */
    char path[1100], old[1200];
    snprintf(path, sizeof(path), "%s/index.db", app->cfg.data);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < YY_ARRAY_LEN(sfx); i++) {
        char p[1200];
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        snprintf(old, sizeof(old), "%s%s.old", path, sfx[i]);
        if (rename(p, old) < 0 && errno != ENOENT) {
            fprintf(stderr, "reindex: cannot move %s aside: %s\n", p, strerror(errno));
            return 1;
        }
    }
    /* kept metadata answers were made from the old index's blobs */
    meta_disk_purge(app->cfg.data);
    if (open_app(app, false) < 0)
        return 1;
    struct reindex_stats st = {app, 0, 0, 0};
    int r = store_walk(app->store, reindex_cb, &st);
    fprintf(stderr, "reindex: %lu files, %lu indexed, %lu not indexed\n", st.files, st.indexed,
            st.failed);
    close_app(app);
    if (r == 0) {
        for (size_t i = 0; i < YY_ARRAY_LEN(sfx); i++) {
            snprintf(old, sizeof(old), "%s%s.old", path, sfx[i]);
            (void)unlink(old);
        }
    }
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("yingyun %s\n", YY_VERSION);
        return 0;
    }
    static struct app app;
    config_defaults(&app.cfg);
    int pos[4096];
    int n_pos = 0;
    char err[512];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    if (config_parse_args(&app.cfg, argc, argv, 2, pos, (int)YY_ARRAY_LEN(pos), &n_pos, err,
                          sizeof(err)) < 0) {
        fprintf(stderr, "yingyun: %s\n", err);
        return 2;
    }
    enum log_level lvl;
    if (log_level_parse(app.cfg.log_level, &lvl) < 0) {
        fprintf(stderr, "yingyun: log_level must be debug, info, warn, error or off\n");
        return 2;
    }
    log_set_level(lvl);
    if (!strcmp(cmd, "serve")) {
        if (n_pos) {
            fprintf(stderr, "yingyun serve: unexpected argument \"%s\"\n", argv[pos[0]]);
            return 2;
        }
        return cmd_serve(&app);
    }
    if (!strcmp(cmd, "import"))
        return cmd_import(&app, argc, argv, pos, n_pos);
    if (!strcmp(cmd, "reindex"))
        return cmd_reindex(&app);
    fprintf(stderr, "yingyun: unknown command \"%s\" (try --help)\n", cmd);
    return 2;
}
