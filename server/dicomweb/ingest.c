/* ingest.c - see ingest.h. */
#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/log.h"
#include "dicom/dcm.h"
#include "dicom/instance.h"
#include "dicom/metablob.h"
#include "dicomweb/ingest.h"
#include "dicomweb/recover.h"
#include "index/index.h"
#include "store/store.h"
#include "core/banned.h"

#define INFLIGHT_MAX 4096
#define GC_WAIT_MS 3 /* longest wait of a group commit for objects being synced */
#define WORKERS_MAX 16 /* background ingest threads (4 requests x 4 parts at a time) */
#define QUEUED_MAX 64 /* answered objects waiting for the committer (~40-200 KB each) */
#define GATHER_ROWS 32 /* the committer writes at once from this many rows, else
                          after opts.gather_ms (at once when a read waits) */

struct batch_job;

/* A durable object answered before its row is committed (ack_when_durable):
 * owns everything the row is made of until the committer has written it.
 * From its series check to its commit it also holds its series UID for its
 * study (the holds list), so that no concurrent object can be answered for
 * the same series in another study. */
struct queued {
    struct index_put put;
    struct inst in;
    struct dcm_file *f;
    struct buf meta;
    char rel[STORE_REL_MAX];
    uint64_t seq;
    struct queued *next;               /* committer queue */
    char series_uid[INDEX_UID_MAX], study_uid[INDEX_UID_MAX]; /* held */
    struct queued *hold_next, **hold_prev;
};

/* One pending index insert waiting for a group commit. */
struct gc_item {
    const struct index_put *put;
    bool sync_dir; /* its file's directory entry is not durable yet */
    int result;
    bool done;
    struct gc_item *next;
};

struct ingest {
    struct store *store;
    struct index *ix;
    struct ingest_opts o;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* SOP Instance UIDs being ingested right now (same-SOP serialisation) */
    char *inflight[INFLIGHT_MAX];
    unsigned n_inflight;
    /* group commit */
    struct gc_item *queue, **queue_tail;
    bool leader;
    unsigned syncing; /* objects between their file sync and index_submit */
    /* the leader waiting for syncing to reach 0, woken only then (not at
     * every arrival, nor by the other uses of cond) */
    pthread_cond_t leader_cond;
    bool leader_waiting;
    /* the directory syncer: fsyncs the directories of the leader's batch
     * while the leader writes its rows (index_put_many's before_commit
     * waits for it), so the two overlap; without it the leader syncs first */
    pthread_t syncer;
    bool syncer_started, syncer_stop;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    struct gc_item *sync_batch; /* handed to the syncer; NULL when done */
    /* the workers of ingest_batch: started on demand up to WORKERS_MAX and
     * kept until ingest_free (a thread per part cost a clone, a stack and
     * a teardown per instance) */
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    struct batch_job *jobs, **jobs_tail;
    unsigned n_jobs, n_idle, n_workers;
    bool stopping;
    pthread_t workers[WORKERS_MAX];
    /* ack_when_durable: the committer thread writes the rows of objects
     * already answered, in order; acked counts those queued, committed
     * those written (or given up: logged, left to recovery) */
    pthread_t committer;
    bool committer_started, committer_stop;
    pthread_mutex_t cq_lock;
    pthread_cond_t cq_cond;      /* the committer: work; enqueuers: room */
    pthread_cond_t visible_cond; /* ingest_wait_visible */
    struct queued *cq, **cq_tail;
    unsigned cq_n;
    _Atomic uint64_t acked, committed;
    unsigned readers_waiting;    /* in ingest_wait_visible (under cq_lock) */
    struct queued *holds;        /* under lock */
};

static void *syncer_main(void *arg);
static void *committer_main(void *arg);

int ingest_new(struct store *s, struct index *ix, const struct ingest_opts *o,
               struct ingest **out)
{
    struct ingest *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->store = s;
    g->ix = ix;
    if (o)
        g->o = *o;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    /* timed waits count on the monotonic clock: a step of the wall clock
     * must not stretch them */
    pthread_condattr_t mono;
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&g->leader_cond, &mono);
    g->queue_tail = &g->queue;
    pthread_mutex_init(&g->jobs_lock, NULL);
    pthread_cond_init(&g->jobs_cond, NULL);
    g->jobs_tail = &g->jobs;
    pthread_mutex_init(&g->sync_lock, NULL);
    pthread_cond_init(&g->sync_cond, NULL);
    g->syncer_started = pthread_create(&g->syncer, NULL, syncer_main, g) == 0;
    if (!g->syncer_started)
        log_warn("ingest: no directory syncer thread; group commits sync first");
    pthread_mutex_init(&g->cq_lock, NULL);
    pthread_cond_init(&g->cq_cond, &mono);
    pthread_condattr_destroy(&mono);
    pthread_cond_init(&g->visible_cond, NULL);
    g->cq_tail = &g->cq;
    if (g->o.ack_when_durable) {
        g->committer_started = pthread_create(&g->committer, NULL, committer_main, g) == 0;
        if (!g->committer_started)
            log_warn("ingest: no committer thread; each STOW waits for its index commit");
    }
    *out = g;
    return 0;
}

void ingest_free(struct ingest *g)
{
    if (!g)
        return;
    /* every batch was waited for by its request: the queue is empty */
    pthread_mutex_lock(&g->jobs_lock);
    g->stopping = true;
    pthread_cond_broadcast(&g->jobs_cond);
    pthread_mutex_unlock(&g->jobs_lock);
    for (unsigned i = 0; i < g->n_workers; i++)
        pthread_join(g->workers[i], NULL);
    if (g->committer_started) {
        /* it writes every queued row before it stops */
        pthread_mutex_lock(&g->cq_lock);
        g->committer_stop = true;
        pthread_cond_broadcast(&g->cq_cond);
        pthread_mutex_unlock(&g->cq_lock);
        pthread_join(g->committer, NULL);
    }
    pthread_mutex_destroy(&g->cq_lock);
    pthread_cond_destroy(&g->cq_cond);
    pthread_cond_destroy(&g->visible_cond);
    if (g->syncer_started) {
        pthread_mutex_lock(&g->sync_lock);
        g->syncer_stop = true;
        pthread_cond_broadcast(&g->sync_cond);
        pthread_mutex_unlock(&g->sync_lock);
        pthread_join(g->syncer, NULL);
    }
    pthread_mutex_destroy(&g->sync_lock);
    pthread_cond_destroy(&g->sync_cond);
    pthread_mutex_destroy(&g->jobs_lock);
    pthread_cond_destroy(&g->jobs_cond);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    pthread_cond_destroy(&g->leader_cond);
    free(g);
}

static bool inflight_has(struct ingest *g, const char *uid)
{
    for (unsigned i = 0; i < g->n_inflight; i++)
        if (strcmp(g->inflight[i], uid) == 0)
            return true;
    return false;
}

/* Waits until no other ingest holds uid, then holds it. */
static int inflight_acquire(struct ingest *g, const char *uid)
{
    char *copy = strdup(uid);
    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&g->lock);
    while (inflight_has(g, uid) || g->n_inflight >= INFLIGHT_MAX)
        pthread_cond_wait(&g->cond, &g->lock);
    g->inflight[g->n_inflight++] = copy;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void inflight_release(struct ingest *g, const char *uid)
{
    pthread_mutex_lock(&g->lock);
    for (unsigned i = 0; i < g->n_inflight; i++) {
        if (strcmp(g->inflight[i], uid) == 0) {
            free(g->inflight[i]);
            g->inflight[i] = g->inflight[--g->n_inflight];
            break;
        }
    }
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Length of the directory part of a store path. */
static size_t dir_len(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    return slash ? (size_t)(slash - rel) : 0;
}

/* Makes the directory entries of a batch durable: one fsync per distinct
 * directory (objects stored at the same time share one), after every file
 * of the batch was renamed into it. A failed directory fails its items
 * (and index_submit then commits none of the batch's rows). */
static void sync_batch_dirs(struct ingest *g, struct gc_item *batch)
{
    for (struct gc_item *it = batch; it; it = it->next) {
        if (!it->sync_dir)
            continue;
        const char *rel = it->put->rel_path;
        size_t n = dir_len(rel);
        int r = store_sync_dir(g->store, rel);
        for (struct gc_item *o = it; o; o = o->next) {
            if (o->sync_dir && dir_len(o->put->rel_path) == n &&
                strncmp(o->put->rel_path, rel, n) == 0) {
                o->sync_dir = false;
                o->result = r;
            }
        }
        if (r < 0)
            log_error("ingest: fsync of the directory of %s failed (%d)", rel, r);
    }
}

static void *syncer_main(void *arg)
{
    struct ingest *g = arg;
    pthread_mutex_lock(&g->sync_lock);
    for (;;) {
        while (!g->sync_batch && !g->syncer_stop)
            pthread_cond_wait(&g->sync_cond, &g->sync_lock);
        if (!g->sync_batch)
            break; /* stopping, nothing handed over */
        struct gc_item *batch = g->sync_batch;
        pthread_mutex_unlock(&g->sync_lock);
        sync_batch_dirs(g, batch);
        pthread_mutex_lock(&g->sync_lock);
        g->sync_batch = NULL;
        pthread_cond_broadcast(&g->sync_cond);
    }
    pthread_mutex_unlock(&g->sync_lock);
    return NULL;
}

/* Hands the batch's directory syncs to the syncer; false when there is
 * nothing to sync or no syncer (the leader then syncs itself first, and
 * dir_sync_wait does not wait). */
static bool dir_sync_start(struct ingest *g, struct gc_item *batch)
{
    bool any = false;
    for (struct gc_item *it = batch; it && !any; it = it->next)
        any = it->sync_dir;
    if (!any || !g->syncer_started)
        return false;
    pthread_mutex_lock(&g->sync_lock);
    g->sync_batch = batch;
    pthread_cond_broadcast(&g->sync_cond);
    pthread_mutex_unlock(&g->sync_lock);
    return true;
}

struct dir_sync {
    struct ingest *g;
    const struct gc_item *batch;
};

/* Waits for the syncer (idempotent): 0, or the error of a directory that
 * could not be synced. index_put_many's before_commit. */
static int dir_sync_wait(void *ctx)
{
    struct dir_sync *d = ctx;
    pthread_mutex_lock(&d->g->sync_lock);
    while (d->g->sync_batch)
        pthread_cond_wait(&d->g->sync_cond, &d->g->sync_lock);
    pthread_mutex_unlock(&d->g->sync_lock);
    for (const struct gc_item *it = d->batch; it; it = it->next)
        if (it->result < 0)
            return it->result;
    return 0;
}

/* An object left the file-sync stage (under g->lock). */
static void syncing_done(struct ingest *g)
{
    g->syncing--;
    if (g->syncing == 0 && g->leader_waiting)
        pthread_cond_signal(&g->leader_cond);
}

/* Whether an item of the queue needs its directory synced (under g->lock). */
static bool queue_needs_sync(const struct ingest *g)
{
    for (const struct gc_item *it = g->queue; it; it = it->next)
        if (it->sync_dir)
            return true;
    return false;
}

/* Group commit: the first waiter becomes the leader, makes the directory
 * entries of every queued item durable (on the syncer thread, while it
 * writes their rows) and commits the rows in one transaction once they
 * are, so concurrent STOW clients share their directory and index syncs.
 * synced: put's object came from the file-sync stage (g->syncing). */
static int index_submit(struct ingest *g, const struct index_put *put, bool synced,
                        bool sync_dir)
{
    struct gc_item me = {put, sync_dir, 0, false, NULL};
    pthread_mutex_lock(&g->lock);
    *g->queue_tail = &me;
    g->queue_tail = &me.next;
    if (synced)
        syncing_done(g);
    while (!me.done) {
        if (!g->leader) {
            g->leader = true;
            /* objects whose files are being synced right now join a batch
             * with a directory to sync (its flush takes about as long as
             * waiting for them), up to GC_WAIT_MS; a batch of objects
             * already durable (one flush) commits at once, since its
             * commit syncs nothing */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += GC_WAIT_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            g->leader_waiting = true;
            while (g->syncing > 0 && queue_needs_sync(g) &&
                   pthread_cond_timedwait(&g->leader_cond, &g->lock, &until) != ETIMEDOUT) {
            }
            g->leader_waiting = false;
            struct gc_item *batch = g->queue;
            g->queue = NULL;
            g->queue_tail = &g->queue;
            pthread_mutex_unlock(&g->lock);
            /* the directories are synced while the rows are written (by
             * the leader first when there is no syncer); the rows are
             * committed (visible) only once every directory is durable */
            struct dir_sync ds = {g, batch};
            if (!dir_sync_start(g, batch))
                sync_batch_dirs(g, batch);
            size_t n = 0;
            for (struct gc_item *it = batch; it; it = it->next)
                n++;
            struct index_put *items = malloc(n * sizeof(*items));
            int *res = malloc(n * sizeof(*res));
            if (!items || !res) {
                (void)dir_sync_wait(&ds);
                for (struct gc_item *it = batch; it; it = it->next)
                    it->result = it->result ? it->result : -ENOMEM;
            } else {
                size_t k = 0;
                for (struct gc_item *it = batch; it; it = it->next)
                    items[k++] = *it->put;
                (void)index_put_many(g->ix, items, n, res, dir_sync_wait, &ds);
                (void)dir_sync_wait(&ds); /* before_commit is skipped on errors */
                k = 0;
                for (struct gc_item *it = batch; it; it = it->next, k++)
                    /* a directory's own error wins over the rollback's */
                    it->result = it->result ? it->result : res[k];
            }
            free(items);
            free(res);
            pthread_mutex_lock(&g->lock);
            for (struct gc_item *it = batch; it;) {
                struct gc_item *next = it->next;
                it->done = true;
                it = next;
            }
            g->leader = false;
            pthread_cond_broadcast(&g->cond);
        } else {
            pthread_cond_wait(&g->cond, &g->lock);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return me.result;
}

/* ---- answered when durable, indexed right after (ack_when_durable) ---- */

static void queued_free(struct queued *q)
{
    if (!q)
        return;
    buf_release(&q->meta);
    inst_release(&q->in);
    dcm_file_free(q->f);
    free(q);
}

static void unhold(struct ingest *g, struct queued *q);

/* After q's row was written (or given up): its series and SOP Instance
 * UID are let go, and q freed. */
static void retire(struct ingest *g, struct queued *q)
{
    unhold(g, q);
    inflight_release(g, q->in.sop_uid);
    queued_free(q);
}

static void unhold(struct ingest *g, struct queued *q)
{
    pthread_mutex_lock(&g->lock);
    if (q->hold_prev) {
        *q->hold_prev = q->hold_next;
        if (q->hold_next)
            q->hold_next->hold_prev = q->hold_prev;
        q->hold_prev = NULL;
    }
    pthread_mutex_unlock(&g->lock);
}

/* Holds in's series UID for its study until q's row is committed; -EEXIST
 * when the series belongs to another study, in the index or among the
 * objects held now (answered or about to be, not yet committed). Held
 * first, looked up after: a row committed meanwhile was held before. */
static int hold_series(struct ingest *g, struct queued *q, const struct inst *in)
{
    pthread_mutex_lock(&g->lock);
    for (struct queued *h = g->holds; h; h = h->hold_next) {
        if (strcmp(h->series_uid, in->series_uid) == 0 &&
            strcmp(h->study_uid, in->study_uid) != 0) {
            pthread_mutex_unlock(&g->lock);
            return -EEXIST;
        }
    }
    snprintf(q->series_uid, sizeof(q->series_uid), "%s", in->series_uid);
    snprintf(q->study_uid, sizeof(q->study_uid), "%s", in->study_uid);
    q->hold_next = g->holds;
    if (g->holds)
        g->holds->hold_prev = &q->hold_next;
    q->hold_prev = &g->holds;
    g->holds = q;
    pthread_mutex_unlock(&g->lock);
    char study[INDEX_UID_MAX];
    int r = index_series_study(g->ix, in->series_uid, study);
    if (r == 0 && strcmp(study, in->study_uid) != 0)
        r = -EEXIST;
    if (r == -ENOENT)
        r = 0;
    if (r < 0)
        unhold(g, q);
    return r;
}

/* Hands q (durable, answered next) to the committer; waits while
 * QUEUED_MAX rows are waiting. */
static void commit_queued(struct ingest *g, struct queued *batch, size_t n);

static void enqueue(struct ingest *g, struct queued *q)
{
    pthread_mutex_lock(&g->cq_lock);
    while (g->cq_n >= QUEUED_MAX && !g->committer_stop)
        pthread_cond_wait(&g->cq_cond, &g->cq_lock);
    if (g->committer_stop) {
        /* stopping (every request has ended by then): written in turn */
        pthread_mutex_unlock(&g->cq_lock);
        q->next = NULL;
        commit_queued(g, q, 1);
        retire(g, q);
        return;
    }
    q->seq = atomic_load(&g->acked) + 1;
    atomic_store(&g->acked, q->seq);
    q->next = NULL;
    *g->cq_tail = q;
    g->cq_tail = &q->next;
    g->cq_n++;
    /* the committer is woken for its first row and for a full batch only
     * (a wake-up per row cost the answer ~40 us here) */
    if (g->cq_n == 1 || g->cq_n == GATHER_ROWS)
        pthread_cond_broadcast(&g->cq_cond);
    pthread_mutex_unlock(&g->cq_lock);
}

/* Writes the rows of a batch of queued objects: one transaction, and when
 * it fails each row alone, again after 0.05, 0.2, 1 and 3 s while the
 * error may pass (a busy or failing index; a series already in another
 * study cannot). A row still not written is logged and its path noted for
 * the next start's recovery (recover_note_unindexed): its object is
 * durable and was answered. The rows' SOP Instance UIDs stay locked and
 * reads keep waiting meanwhile. */
static void commit_queued(struct ingest *g, struct queued *batch, size_t n)
{
    static const unsigned retry_ms[] = {50, 200, 1000, 3000};
    struct index_put *items = malloc(n * sizeof(*items));
    int *res = malloc(n * sizeof(*res));
    int r = -ENOMEM;
    size_t k = 0;
    if (items && res) {
        for (struct queued *q = batch; q; q = q->next)
            items[k++] = q->put;
        r = index_put_many(g->ix, items, n, res, NULL, NULL);
    }
    k = 0;
    for (struct queued *q = batch; q; q = q->next, k++) {
        int e = r < 0 ? r : res[k];
        /* alone at once, then after each pause */
        for (unsigned t = 0; e < 0 && e != -EEXIST && t <= YY_ARRAY_LEN(retry_ms); t++) {
            if (t > 0)
                usleep(retry_ms[t - 1] * 1000u);
            int one = 0;
            e = index_put_many(g->ix, &q->put, 1, &one, NULL, NULL);
            e = e < 0 ? e : one;
        }
        if (e < 0) {
            int nr = recover_note_unindexed(g->store, q->rel);
            log_error("ingest: %s was stored and answered but its index row could not be "
                      "written (%s); %s",
                      q->rel, strerror(-e),
                      nr == 0 ? "noted for the next start's recovery"
                              : "and could not be noted either: `yingyun reindex` indexes it");
        }
    }
    free(items);
    free(res);
}

static void *committer_main(void *arg)
{
    struct ingest *g = arg;
    pthread_mutex_lock(&g->cq_lock);
    for (;;) {
        while (!g->cq && !g->committer_stop)
            pthread_cond_wait(&g->cq_cond, &g->cq_lock);
        if (!g->cq)
            break; /* stopping, every row written */
        /* rows written together share their pages (series, study, index
         * leaves) and the commit: a few gather for up to gather_ms,
         * unless a request is waiting to see them */
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += g->o.gather_ms / 1000;
        until.tv_nsec += (long)(g->o.gather_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (g->cq_n < GATHER_ROWS && !g->readers_waiting && !g->committer_stop &&
               pthread_cond_timedwait(&g->cq_cond, &g->cq_lock, &until) != ETIMEDOUT) {
        }
        struct queued *batch = g->cq;
        size_t n = g->cq_n;
        g->cq = NULL;
        g->cq_tail = &g->cq;
        g->cq_n = 0;
        pthread_cond_broadcast(&g->cq_cond); /* room */
        pthread_mutex_unlock(&g->cq_lock);
        commit_queued(g, batch, n);
        uint64_t last = 0;
        for (struct queued *q = batch; q;) {
            struct queued *next = q->next;
            last = q->seq;
            retire(g, q);
            q = next;
        }
        pthread_mutex_lock(&g->cq_lock);
        atomic_store(&g->committed, last);
        pthread_cond_broadcast(&g->visible_cond);
    }
    pthread_mutex_unlock(&g->cq_lock);
    return NULL;
}

void ingest_wait_visible(struct ingest *g)
{
    if (!g)
        return;
    uint64_t target = atomic_load(&g->acked);
    if (atomic_load(&g->committed) >= target)
        return;
    pthread_mutex_lock(&g->cq_lock);
    if (atomic_load(&g->committed) < target) {
        g->readers_waiting++;
        pthread_cond_broadcast(&g->cq_cond); /* no gathering now */
        while (atomic_load(&g->committed) < target)
            pthread_cond_wait(&g->visible_cond, &g->cq_lock);
        g->readers_waiting--;
    }
    pthread_mutex_unlock(&g->cq_lock);
}

static void set_ids(struct ingest_result *res, const struct inst *in)
{
    snprintf(res->sop_class_uid, sizeof(res->sop_class_uid), "%s",
             in->sop_class_uid ? in->sop_class_uid : "");
    snprintf(res->sop_uid, sizeof(res->sop_uid), "%s", in->sop_uid ? in->sop_uid : "");
    snprintf(res->study_uid, sizeof(res->study_uid), "%s", in->study_uid ? in->study_uid : "");
    snprintf(res->series_uid, sizeof(res->series_uid), "%s", in->series_uid ? in->series_uid : "");
}

/* Best-effort identity of an object that failed to parse fully, so the
 * FailedSOPSequence can name it. */
static void set_ids_from_file(struct ingest_result *res, const struct dcm_file *f)
{
    const char *v;
    if ((v = dcm_str(f, &f->ds, TAG(0x0008, 0x0016))) && uid_valid(v))
        snprintf(res->sop_class_uid, sizeof(res->sop_class_uid), "%s", v);
    if ((v = dcm_str(f, &f->ds, TAG(0x0008, 0x0018))) && uid_valid(v))
        snprintf(res->sop_uid, sizeof(res->sop_uid), "%s", v);
}

static void fail(struct ingest_result *res, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct ingest_result *res, uint16_t code, const char *fmt, ...)
{
    res->outcome = INGEST_FAILED;
    res->failure_reason = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
}

/* The index's form of the instance's JSON (metablob.h), made by the ingest
 * thread so that the group commit only copies it. */
static int encode_meta(const struct inst *in, struct buf *mb)
{
    buf_init(mb, (size_t)512 << 20);
    return metablob_encode(in->json.text.data ? in->json.text.data : "{}",
                           in->json.text.data ? in->json.text.len : 2, in->json.marks,
                           in->json.n_marks, mb);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses the object (from mem when not NULL, else from fd) and extracts;
 * on failure fills res and returns -EBADMSG. */
static int parse_and_extract(int fd, const void *mem, size_t mem_len, struct dcm_file **f,
                             struct inst *in, struct ingest_result *res)
{
    char err[256];
    int r = mem ? dcm_parse_mem(mem, mem_len, NULL, f, err, sizeof(err))
                : dcm_parse_fd(fd, NULL, f, err, sizeof(err));
    if (r < 0) {
        if (r == -ENOMEM) {
            fail(res, FAIL_OUT_OF_RESOURCES, "out of memory while parsing%s", "");
            return r;
        }
        fail(res, FAIL_CANNOT_UNDERSTAND, "not a valid DICOM Part 10 object: %s", err);
        return -EBADMSG;
    }
    enum inst_status st;
    struct file_bytes src = {fd, mem, mem_len};
    r = inst_from_file(*f, &src, in, &st, err, sizeof(err));
    if (r < 0) {
        set_ids_from_file(res, *f);
        fail(res, st == INST_BAD_UID ? FAIL_DATASET_MISMATCH : FAIL_CANNOT_UNDERSTAND, "%s",
             err);
        return r == -ENOMEM ? r : -EBADMSG;
    }
    set_ids(res, in);
    return 0;
}

int ingest_tmp(struct ingest *g, struct store_tmp *t, const char *expected_study,
               struct ingest_result *res)
{
    memset(res, 0, sizeof(*res));
    struct dcm_file *f = NULL;
    struct inst in;
    struct queued *q = NULL; /* answered when durable (ack_when_durable) */
    bool holding = false;
    int r;
    memset(&in, 0, sizeof(in));
    struct buf meta;
    buf_init(&meta, 0);
    int fd = -1;
    r = store_tmp_finish(t);
    if (r < 0) {
        if (r == -ENOSPC)
            fail(res, FAIL_OUT_OF_RESOURCES, "disk full: the object was not stored%s", "");
        else
            fail(res, FAIL_PROCESSING, "could not write the object to disk%s", "");
        goto out;
    }
    /* parsed from memory when the object is still there (direct I/O; the
     * file is then not opened again), else from the file */
    size_t mem_len = 0;
    const void *mem = store_tmp_mem(t, &mem_len);
    if (!mem && (fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0) {
        fail(res, FAIL_PROCESSING, "cannot read the received object%s", "");
        r = -EIO;
        goto out;
    }
    r = parse_and_extract(fd, mem, mem_len, &f, &in, res);
    if (r < 0) {
        r = r == -EBADMSG ? 0 : r;
        goto out;
    }
    if (expected_study && strcmp(expected_study, in.study_uid) != 0) {
        fail(res, FAIL_STUDY_MISMATCH,
             "StudyInstanceUID of the object differs from the study in the request URL%s", "");
        goto out;
    }
    r = inflight_acquire(g, in.sop_uid);
    if (r < 0) {
        fail(res, FAIL_OUT_OF_RESOURCES, "out of memory%s", "");
        goto out;
    }
    holding = true;

    struct arena *a = arena_new(0);
    struct index_instance old;
    char old_rel[STORE_REL_MAX] = "";
    int lr = a ? index_get_instance(g->ix, in.sop_uid, false, a, &old) : -ENOMEM;
    if (lr == 0) {
        bool same = false;
        int cr = store_same_content(g->store, t, old.rel_path, &same);
        if (cr == 0 && same) {
            arena_free(a);
            res->outcome = INGEST_DUPLICATE;
            snprintf(res->reason, sizeof(res->reason), "identical object already stored");
            goto out;
        }
        if (!g->o.overwrite) {
            arena_free(a);
            fail(res, FAIL_DUPLICATE,
                 "a different object with this SOP Instance UID is already stored%s", "");
            goto out;
        }
        if (strcmp(old.study_uid, in.study_uid) != 0 ||
            strcmp(old.series_uid, in.series_uid) != 0) {
            arena_free(a);
            fail(res, FAIL_DUPLICATE,
                 "the stored object with this SOP Instance UID belongs to another study or "
                 "series%s",
                 "");
            goto out;
        }
        /* replaced: the old file (of another day) goes once the new one is
         * indexed */
        snprintf(old_rel, sizeof(old_rel), "%s", old.rel_path);
    } else if (lr != -ENOENT) {
        arena_free(a);
        fail(res, FAIL_PROCESSING, "index lookup failed%s", "");
        r = lr;
        goto out;
    }
    arena_free(a);

    /* a new object is answered once durable and its row written right
     * after (ingest_wait_visible): then nothing may refuse the row, so the
     * one check the index makes (a series of another study) is made now */
    if (g->committer_started && !old_rel[0]) {
        q = calloc(1, sizeof(*q));
        r = q ? hold_series(g, q, &in) : -ENOMEM;
        if (r < 0) {
            free(q);
            q = NULL;
            if (r == -EEXIST) {
                fail(res, FAIL_DATASET_MISMATCH,
                     "its SeriesInstanceUID is already used by another study%s", "");
                r = 0;
            } else {
                fail(res, r == -ENOMEM ? FAIL_OUT_OF_RESOURCES : FAIL_PROCESSING,
                     "index lookup failed%s", "");
            }
            goto out;
        }
    }

    r = encode_meta(&in, &meta);
    if (r < 0) {
        fail(res, FAIL_OUT_OF_RESOURCES, "out of memory%s", "");
        goto out;
    }
    char rel[STORE_REL_MAX];
    uint64_t size = t->size; /* the bytes written: the file's size */
    pthread_mutex_lock(&g->lock);
    g->syncing++;
    pthread_mutex_unlock(&g->lock);
    enum store_sync next;
    r = store_commit_start(g->store, t, in.sop_uid, old_rel[0] ? old_rel : NULL, rel, &next);
    if (r == 0 && next == STORE_SYNC_FILE)
        r = store_commit_finish(g->store, t, rel);
    if (r < 0) {
        pthread_mutex_lock(&g->lock);
        syncing_done(g);
        pthread_mutex_unlock(&g->lock);
        if (r == -ENOSPC)
            fail(res, FAIL_OUT_OF_RESOURCES, "disk full: the object was not stored%s", "");
        else
            fail(res, FAIL_PROCESSING, "could not write the object to disk%s", "");
        goto out;
    }
    if (q && next == STORE_SYNC_FILE) {
        pthread_mutex_lock(&g->lock);
        syncing_done(g); /* out of the file-sync stage (index_submit's) */
        pthread_mutex_unlock(&g->lock);
        json_out_release(&in.json); /* in the metadata blob now */
        q->in = in;
        memset(&in, 0, sizeof(in));
        q->f = f;
        f = NULL;
        q->meta = meta;
        buf_init(&meta, 0);
        snprintf(q->rel, sizeof(q->rel), "%s", rel);
        q->put = (struct index_put){&q->in, q->rel, size, now_ms(), q->meta.data, q->meta.len,
                                    false};
        holding = false; /* the committer releases the SOP Instance UID */
        enqueue(g, q);
        q = NULL;
        res->outcome = INGEST_STORED;
        r = 0;
        goto out;
    }
    /* a replacement's row must be durable before the replaced file goes */
    struct index_put put = {&in, rel, size, now_ms(), meta.data, meta.len, old_rel[0] != 0};
    r = index_submit(g, &put, true, next == STORE_SYNC_DIR);
    if (r < 0) {
        /* the file is durable but not indexed: remove it so that nothing
         * half-stored stays (the client is told it failed) */
        (void)store_unlink(g->store, rel);
        if (r == -EEXIST)
            fail(res, FAIL_DATASET_MISMATCH,
                 "its SeriesInstanceUID is already used by another study%s", "");
        else if (r == -ENOSPC)
            fail(res, FAIL_OUT_OF_RESOURCES, "disk full while indexing%s", "");
        else
            fail(res, FAIL_PROCESSING, "the index could not record the object%s", "");
        r = r == -EEXIST ? 0 : r;
        goto out;
    }
    if (old_rel[0] && strcmp(old_rel, rel) != 0 && store_unlink(g->store, old_rel) < 0)
        log_warn("ingest: the replaced file %s could not be removed", old_rel);
    res->outcome = INGEST_STORED;
    r = 0;
out:
    if (q) {
        unhold(g, q);
        free(q);
    }
    if (holding)
        inflight_release(g, in.sop_uid);
    buf_release(&meta);
    inst_release(&in);
    dcm_file_free(f);
    if (fd >= 0)
        close(fd);
    store_tmp_discard(t);
    return r;
}

/* Whether the index holds sop_uid with an object that is still stored
 * (*rel_is_it: at rel). */
static int indexed_elsewhere(struct ingest *g, const char *sop_uid, const char *rel,
                             bool *held, bool *rel_is_it)
{
    *held = *rel_is_it = false;
    struct arena *a = arena_new(0);
    if (!a)
        return -ENOMEM;
    struct index_instance row;
    int r = index_get_instance(g->ix, sop_uid, false, a, &row);
    if (r == 0) {
        *rel_is_it = strcmp(row.rel_path, rel) == 0;
        int fd;
        if (!*rel_is_it && store_open_object(g->store, row.rel_path, &fd) == 0) {
            close(fd);
            *held = true;
        }
    }
    arena_free(a);
    return r == -ENOENT ? 0 : r;
}

static int index_stored(struct ingest *g, const char *rel, bool recovering,
                        struct ingest_result *res);

int ingest_existing(struct ingest *g, const char *rel, struct ingest_result *res)
{
    return index_stored(g, rel, false, res);
}

int ingest_recover(struct ingest *g, const char *rel, struct ingest_result *res)
{
    return index_stored(g, rel, true, res);
}

static int index_stored(struct ingest *g, const char *rel, bool recovering,
                        struct ingest_result *res)
{
    memset(res, 0, sizeof(*res));
    int fd;
    int r = store_open_object(g->store, rel, &fd);
    if (r < 0) {
        fail(res, FAIL_PROCESSING, "cannot open %s", rel);
        return r;
    }
    r = store_check_crc(fd);
    if (r < 0) {
        close(fd);
        if (r != -EBADMSG) {
            fail(res, FAIL_PROCESSING, "cannot read %s", rel);
            return r;
        }
        /* written with one flush and torn by a crash before that flush
         * ended: never acknowledged, and not what its client sent */
        char aside[STORE_REL_MAX] = "";
        r = store_set_aside(g->store, rel, aside);
        fail(res, FAIL_PROCESSING,
             "%s does not match its CRC-32 (torn by a crash before it was acknowledged): %s %s",
             rel, r == 0 ? "moved to" : "could not be moved to damaged/", aside);
        return 0;
    }
    struct dcm_file *f = NULL;
    struct inst in;
    memset(&in, 0, sizeof(in));
    r = parse_and_extract(fd, NULL, 0, &f, &in, res);
    if (r == 0) {
        bool held = false, known = false, named = store_name_matches(rel, in.sop_uid);
        int kr = named && recovering ? indexed_elsewhere(g, in.sop_uid, rel, &held, &known) : 0;
        if (!named) {
            fail(res, FAIL_DATASET_MISMATCH, "%s is not stored under its SOP Instance UID", rel);
        } else if (kr < 0) {
            fail(res, FAIL_PROCESSING, "index lookup failed for %s", rel);
            r = kr;
        } else if (known || held) {
            /* indexed already, or a replacement whose commit was lost: its
             * client was not answered (a replacement's commit is durable
             * before the answer), and the object it replaced stays */
            res->outcome = INGEST_DUPLICATE;
            snprintf(res->reason, sizeof(res->reason), "%s",
                     known ? "indexed" : "another stored file holds this SOP Instance UID");
        } else {
            struct stat st;
            int64_t mtime = 0;
            uint64_t size = 0;
            if (fstat(fd, &st) == 0) {
                mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
                size = (uint64_t)st.st_size;
            }
            struct buf meta;
            int ir = encode_meta(&in, &meta);
            struct index_put put = {&in, rel, size, mtime, meta.data, meta.len, false};
            if (ir == 0)
                ir = index_submit(g, &put, false, false);
            buf_release(&meta);
            if (ir < 0)
                fail(res, FAIL_PROCESSING, "the index could not record %s", rel);
            else
                res->outcome = INGEST_STORED;
            r = ir == -EEXIST ? 0 : ir;
        }
        inst_release(&in);
    } else if (r == -EBADMSG) {
        r = 0;
    }
    dcm_file_free(f);
    close(fd);
    return r;
}

/* ---- background ingests of one request ---- */

struct ingest_batch {
    struct ingest *g;
    unsigned max_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned running;
};

struct batch_job {
    struct ingest_batch *b;
    struct store_tmp t;
    const char *study;
    struct ingest_result *res;
    struct batch_job *next;
};

int ingest_batch_new(struct ingest *g, unsigned max_running, struct ingest_batch **out)
{
    struct ingest_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->g = g;
    b->max_running = max_running ? max_running : 1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    *out = b;
    return 0;
}

static void run_job(struct batch_job *j)
{
    struct ingest_batch *b = j->b;
    (void)ingest_tmp(b->g, &j->t, j->study, j->res);
    free(j);
    pthread_mutex_lock(&b->lock);
    b->running--;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void *worker_main(void *arg)
{
    struct ingest *g = arg;
    pthread_mutex_lock(&g->jobs_lock);
    for (;;) {
        while (!g->jobs && !g->stopping) {
            g->n_idle++;
            pthread_cond_wait(&g->jobs_cond, &g->jobs_lock);
            g->n_idle--;
        }
        struct batch_job *j = g->jobs;
        if (!j)
            break; /* stopping */
        g->jobs = j->next;
        if (!g->jobs)
            g->jobs_tail = &g->jobs;
        g->n_jobs--;
        pthread_mutex_unlock(&g->jobs_lock);
        run_job(j);
        pthread_mutex_lock(&g->jobs_lock);
    }
    pthread_mutex_unlock(&g->jobs_lock);
    return NULL;
}

/* Queues j for a worker, starting one when none is free. False when there
 * is no worker at all (the caller ingests in its own thread). */
static bool queue_job(struct ingest *g, struct batch_job *j)
{
    pthread_mutex_lock(&g->jobs_lock);
    if (g->n_jobs >= g->n_idle && g->n_workers < WORKERS_MAX) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        /* the parser recurses into nested sequences (bounded depth) */
        pthread_attr_setstacksize(&at, (size_t)1 << 20);
        if (pthread_create(&g->workers[g->n_workers], &at, worker_main, g) == 0)
            g->n_workers++;
        pthread_attr_destroy(&at);
    }
    bool queued = g->n_workers > 0;
    if (queued) {
        j->next = NULL;
        *g->jobs_tail = j;
        g->jobs_tail = &j->next;
        g->n_jobs++;
        pthread_cond_signal(&g->jobs_cond);
    }
    pthread_mutex_unlock(&g->jobs_lock);
    return queued;
}

void ingest_batch_add(struct ingest_batch *b, struct store_tmp *t, const char *expected_study,
                      struct ingest_result *res)
{
    struct batch_job *j = malloc(sizeof(*j));
    if (j) {
        j->b = b;
        j->t = *t;
        j->study = expected_study;
        j->res = res;
        pthread_mutex_lock(&b->lock);
        while (b->running >= b->max_running)
            pthread_cond_wait(&b->cond, &b->lock);
        b->running++;
        pthread_mutex_unlock(&b->lock);
        if (queue_job(b->g, j))
            return;
        free(j);
        pthread_mutex_lock(&b->lock);
        b->running--;
        pthread_mutex_unlock(&b->lock);
    }
    (void)ingest_tmp(b->g, t, expected_study, res);
}

void ingest_batch_wait(struct ingest_batch *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->running)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

void ingest_batch_free(struct ingest_batch *b)
{
    if (!b)
        return;
    ingest_batch_wait(b);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
}
