/* index.c - see index.h. */
#include "core/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/instance.h"
#include "dicom/pn.h"
#include "index/index.h"
#include "core/banned.h"

extern const char yy_schema_sql[]; /* generated from schema.sql */

#define POOL_MAX 64
#define BUSY_TIMEOUT_MS 30000
#define SCHEMA_VERSION 1
#define CKPT_FRAMES 1000      /* log frames (pages) that wake the checkpointer */
#define CKPT_FRAMES_MAX 8000  /* ... and that make a commit finish the copy */

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_SYNC_NORMAL,
    ST_SYNC_FULL,
    ST_PATIENT_UPSERT,
    ST_STUDY_FIND,
    ST_STUDY_ATTRS,
    ST_PN_KEY_DELETE,
    ST_STUDY_INSERT,
    ST_STUDY_FILL,
    ST_PN_KEY_INSERT,
    ST_PN_PREFIX_COUNT,
    ST_SERIES_FIND,
    ST_SERIES_ATTRS,
    ST_SERIES_INSERT,
    ST_SERIES_FILL,
    ST_INSTANCE_FIND,
    ST_INSTANCE_DELETE,
    ST_INSTANCE_INSERT,
    ST_DATA_INSERT,
    ST_SERIES_RECOUNT,
    ST_STUDY_RECOUNT,
    ST_GET_INSTANCE,
    ST_GET_INSTANCE_LAYOUT,
    ST_SERIES_STUDY,
    ST_COUNT
};

static const char *const g_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT item",
    [ST_RELEASE] = "RELEASE item",
    [ST_ROLLBACK_TO] = "ROLLBACK TO item",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [ST_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [ST_PATIENT_UPSERT] =
        "INSERT INTO patient(patient_id, issuer) VALUES(?1, ?2) "
        "ON CONFLICT(patient_id, issuer) DO UPDATE SET patient_id = excluded.patient_id "
        "RETURNING pk",
    [ST_STUDY_FIND] = "SELECT pk, attr_sop FROM study WHERE study_uid = ?1",
    [ST_STUDY_INSERT] =
        "INSERT INTO study(study_uid, patient_fk, patient_name, patient_name_key, patient_id, "
        "issuer, patient_birth_date, patient_sex, study_date, study_time, accession, referring, "
        "referring_key, description, study_id, institution, charset, timezone, json, created_ms, "
        "updated_ms, attr_sop) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,"
        "?18,?19,?20,?20,?21) RETURNING pk",
    [ST_STUDY_ATTRS] =
        "UPDATE study SET patient_fk = ?2, patient_name = ?3, patient_name_key = ?4, "
        "patient_id = ?5, issuer = ?6, patient_birth_date = ?7, patient_sex = ?8, "
        "study_date = ?9, study_time = ?10, accession = ?11, referring = ?12, "
        "referring_key = ?13, description = ?14, study_id = ?15, institution = ?16, "
        "charset = ?17, timezone = ?18, json = ?19, updated_ms = max(updated_ms, ?20), "
        "attr_sop = ?21 WHERE pk = ?1",
    [ST_PN_KEY_DELETE] = "DELETE FROM pn_key WHERE study_fk = ?1",
    [ST_STUDY_FILL] = "UPDATE study SET updated_ms = max(updated_ms, ?2) WHERE pk = ?1",
    [ST_PN_KEY_INSERT] = "INSERT INTO pn_key(study_fk, kind, key) VALUES(?1, ?2, ?3)",
    [ST_PN_PREFIX_COUNT] = "SELECT (SELECT count(*) FROM (SELECT 1 FROM pn_key WHERE kind = 0 AND "
                           "key GLOB ?1 LIMIT 20000)), (SELECT max(pk) FROM study)",
    [ST_SERIES_FIND] = "SELECT pk, study_fk, attr_sop FROM series WHERE series_uid = ?1",
    [ST_SERIES_INSERT] =
        "INSERT INTO series(series_uid, study_fk, modality, series_number, description, "
        "body_part, series_date, series_time, pps_start_date, pps_start_time, station, "
        "frame_of_reference, json, updated_ms, attr_sop) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
        "?11,?12,?13,?14,?15) RETURNING pk",
    [ST_SERIES_ATTRS] =
        "UPDATE series SET modality = ?3, series_number = ?4, description = ?5, body_part = ?6, "
        "series_date = ?7, series_time = ?8, pps_start_date = ?9, pps_start_time = ?10, "
        "station = ?11, frame_of_reference = ?12, json = ?13, updated_ms = max(updated_ms, ?14), "
        "attr_sop = ?15 WHERE pk = ?1 AND ?2 IS NOT NULL",
    [ST_SERIES_FILL] = "UPDATE series SET updated_ms = max(updated_ms, ?2) WHERE pk = ?1",
    [ST_INSTANCE_FIND] = "SELECT pk, series_fk, study_fk FROM instance WHERE sop_uid = ?1",
    [ST_INSTANCE_DELETE] = "DELETE FROM instance WHERE pk = ?1",
    [ST_INSTANCE_INSERT] =
        "INSERT INTO instance(sop_uid, series_fk, study_fk, sop_class_uid, instance_number, "
        "n_frames, rows, cols, bits_alloc, ts_uid, rel_path, size, created_ms) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13) RETURNING pk",
    [ST_DATA_INSERT] = "INSERT INTO instance_data(pk, meta, layout) VALUES(?1, ?2, ?3)",
    [ST_SERIES_RECOUNT] =
        "UPDATE series SET n_instances = (SELECT count(*) FROM instance WHERE series_fk = ?1) "
        "WHERE pk = ?1",
    [ST_STUDY_RECOUNT] =
        "UPDATE study SET "
        "n_instances = (SELECT count(*) FROM instance WHERE study_fk = ?1), "
        "n_series = (SELECT count(*) FROM series WHERE study_fk = ?1), "
        "modalities = (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m "
        "FROM series WHERE study_fk = ?1 AND modality IS NOT NULL ORDER BY m)) "
        "WHERE pk = ?1",
    [ST_GET_INSTANCE] =
        "SELECT i.pk, s.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, i.ts_uid, "
        "i.rel_path, i.size, i.n_frames, i.created_ms FROM instance i "
        "JOIN series se ON se.pk = i.series_fk JOIN study s ON s.pk = i.study_fk "
        "WHERE i.sop_uid = ?1",
    [ST_SERIES_STUDY] = "SELECT s.study_uid FROM series se JOIN study s ON s.pk = se.study_fk "
                        "WHERE se.series_uid = ?1",
    /* the same and the layout, in one statement (one read transaction) */
    [ST_GET_INSTANCE_LAYOUT] =
        "SELECT i.pk, s.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, i.ts_uid, "
        "i.rel_path, i.size, i.n_frames, i.created_ms, d.layout FROM instance i "
        "JOIN series se ON se.pk = i.series_fk JOIN study s ON s.pk = i.study_fk "
        "LEFT JOIN instance_data d ON d.pk = i.pk WHERE i.sop_uid = ?1",
};

/* Recently used search statements of a connection, by SQL text: the same
 * kind of search (the values are bound) skips parsing and planning. */
#define QCACHE_N 16

struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *qcache[QCACHE_N]; /* idle; sqlite3_sql() gives the text */
    unsigned qcache_next;
    struct conn *next;
};

struct index {
    char *path;
    _Atomic uint64_t write_gen; /* bumped after every write transaction */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conn *free_list;
    unsigned n_conns;
    /* the checkpointer: copies the write-ahead log into the database on
     * its own thread and connection, so that no commit waits for it */
    pthread_t ckpt_thread;
    bool ckpt_started, ckpt_wanted, ckpt_stop;
    _Atomic bool ckpt_ok; /* the thread runs with its connection */
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_cond;
};

/* ---- SQL functions ---- */

/* pn_fuzzy(key, query): pn_fuzzy_match() */
static void sql_pn_fuzzy(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *key = (const char *)sqlite3_value_text(argv[0]);
    const char *q = (const char *)sqlite3_value_text(argv[1]);
    sqlite3_result_int(ctx, key && q && pn_fuzzy_match(key, q));
}

/* dicom_wild(pattern, value): DICOM '*' / '?' wildcard match (case-sensitive) */
static void sql_dicom_wild(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *p = (const char *)sqlite3_value_text(argv[0]);
    const char *v = (const char *)sqlite3_value_text(argv[1]);
    sqlite3_result_int(ctx, p && v && pn_wildcard_match(p, v));
}

/* ---- connections ---- */

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    for (unsigned i = 0; i < QCACHE_N; i++)
        sqlite3_finalize(c->qcache[i]);
    sqlite3_close_v2(c->db);
    free(c);
}

static int conn_exec(struct conn *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_debug("index: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

/* Called by SQLite after each commit with the frames now in the log:
 * from CKPT_FRAMES on, the checkpointer is woken. While commits keep
 * coming it never copies the very last frames, and the log restarts from
 * its beginning only after a checkpoint that did: so from CKPT_FRAMES_MAX
 * on, the committing thread finishes the copy itself (FULL: it waits for
 * the checkpointer's round and for readers of older snapshots) and the
 * next commit starts the log again. Without a checkpointer thread,
 * commits checkpoint as SQLite's own auto-checkpoint would. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct index *ix = arg;
    if (frames < CKPT_FRAMES)
        return SQLITE_OK;
    if (!atomic_load(&ix->ckpt_ok)) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (frames >= CKPT_FRAMES_MAX) {
        int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_FULL, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("index: checkpoint failed: %s", sqlite3_errmsg(db));
        return SQLITE_OK;
    }
    pthread_mutex_lock(&ix->ckpt_lock);
    if (!ix->ckpt_wanted) {
        ix->ckpt_wanted = true;
        pthread_cond_signal(&ix->ckpt_cond);
    }
    pthread_mutex_unlock(&ix->ckpt_lock);
    return SQLITE_OK;
}

static int conn_open(struct index *ix, const char *path, struct conn **out)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        conn_free(c);
        return -EIO;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(c->db, 1);
    if (conn_exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                     "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; "
                     "PRAGMA cache_size=-2048") < 0) {
        conn_free(c);
        return -EIO;
    }
    if (ix)
        sqlite3_wal_hook(c->db, wal_hook, ix); /* replaces SQLite's auto-checkpoint */
    sqlite3_create_function(c->db, "pn_fuzzy", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                            sql_pn_fuzzy, NULL, NULL);
    sqlite3_create_function(c->db, "dicom_wild", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                            sql_dicom_wild, NULL, NULL);
    *out = c;
    return 0;
}

static sqlite3_stmt *stmt(struct conn *c, enum stmt_id id)
{
    if (!c->st[id]) {
        if (sqlite3_prepare_v3(c->db, g_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                               NULL) != SQLITE_OK) {
            log_debug("index: prepare %d: %s", (int)id, sqlite3_errmsg(c->db));
            return NULL;
        }
    }
    sqlite3_reset(c->st[id]);
    sqlite3_clear_bindings(c->st[id]);
    return c->st[id];
}

static struct conn *acquire(struct index *ix)
{
    pthread_mutex_lock(&ix->lock);
    for (;;) {
        if (ix->free_list) {
            struct conn *c = ix->free_list;
            ix->free_list = c->next;
            pthread_mutex_unlock(&ix->lock);
            return c;
        }
        if (ix->n_conns < POOL_MAX) {
            ix->n_conns++;
            pthread_mutex_unlock(&ix->lock);
            struct conn *c = NULL;
            if (conn_open(ix, ix->path, &c) < 0) {
                pthread_mutex_lock(&ix->lock);
                ix->n_conns--;
                pthread_cond_signal(&ix->cond);
                pthread_mutex_unlock(&ix->lock);
                return NULL;
            }
            return c;
        }
        pthread_cond_wait(&ix->cond, &ix->lock);
    }
}

static void release(struct index *ix, struct conn *c)
{
    if (!c)
        return;
    /* no statement of a pooled connection may stay stepped: an open read
     * snapshot makes the next BEGIN IMMEDIATE on this connection fail at
     * once with SQLITE_BUSY_SNAPSHOT once another connection has written */
    for (int i = 0; i < ST_COUNT; i++)
        if (c->st[i])
            sqlite3_reset(c->st[i]);
    pthread_mutex_lock(&ix->lock);
    c->next = ix->free_list;
    ix->free_list = c;
    pthread_cond_signal(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
}

/* Closes a pooled connection instead of returning it. */
static void drop(struct index *ix, struct conn *c)
{
    conn_free(c);
    pthread_mutex_lock(&ix->lock);
    ix->n_conns--;
    pthread_cond_signal(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
}

/* The checkpointer thread: PASSIVE checkpoints (never blocking readers or
 * the writer) when wal_hook asks, on a connection of its own. */
static void *ckpt_main(void *arg)
{
    struct index *ix = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(ix->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("index: the checkpointer cannot open %s; commits checkpoint instead",
                  ix->path);
        sqlite3_close_v2(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    atomic_store(&ix->ckpt_ok, true);
    pthread_mutex_lock(&ix->ckpt_lock);
    for (;;) {
        while (!ix->ckpt_wanted && !ix->ckpt_stop)
            pthread_cond_wait(&ix->ckpt_cond, &ix->ckpt_lock);
        if (ix->ckpt_stop)
            break;
        ix->ckpt_wanted = false;
        pthread_mutex_unlock(&ix->ckpt_lock);
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("index: checkpoint failed: %s", sqlite3_errmsg(db));
        pthread_mutex_lock(&ix->ckpt_lock);
    }
    pthread_mutex_unlock(&ix->ckpt_lock);
    atomic_store(&ix->ckpt_ok, false);
    sqlite3_close_v2(db);
    return NULL;
}

int index_open(const char *path, struct index **out, char *err, size_t err_cap)
{
    struct index *ix = calloc(1, sizeof(*ix));
    if (!ix)
        return -ENOMEM;
    ix->path = strdup(path);
    pthread_mutex_init(&ix->lock, NULL);
    pthread_cond_init(&ix->cond, NULL);
    pthread_mutex_init(&ix->ckpt_lock, NULL);
    pthread_cond_init(&ix->ckpt_cond, NULL);
    struct conn *c = NULL;
    int r = ix->path ? conn_open(ix, path, &c) : -ENOMEM;
    if (r < 0) {
        snprintf(err, err_cap, "cannot open index database %s", path);
        index_close(ix);
        return r;
    }
    sqlite3_stmt *v;
    int version = 0;
    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK) {
        if (sqlite3_step(v) == SQLITE_ROW)
            version = sqlite3_column_int(v, 0);
        sqlite3_finalize(v);
    }
    if (version > SCHEMA_VERSION) {
        snprintf(err, err_cap, "index %s has schema version %d, newer than this program (%d)",
                 path, version, SCHEMA_VERSION);
        conn_free(c);
        index_close(ix);
        return -EIO;
    }
    char *msg = NULL;
    /* databases made before attr_sop existed get the column (NULL: the
     * next instance of each study/series sets the attributes) */
    if (version >= 1) {
        (void)sqlite3_exec(c->db, "ALTER TABLE study ADD COLUMN attr_sop TEXT", NULL, NULL, NULL);
        (void)sqlite3_exec(c->db, "ALTER TABLE series ADD COLUMN attr_sop TEXT", NULL, NULL, NULL);
    }
    if (sqlite3_exec(c->db, yy_schema_sql, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA user_version = 1", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_cap, "cannot create the index schema: %s",
                 msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        conn_free(c);
        index_close(ix);
        return -EIO;
    }
    ix->n_conns = 1;
    release(ix, c);
    ix->ckpt_started = pthread_create(&ix->ckpt_thread, NULL, ckpt_main, ix) == 0;
    if (!ix->ckpt_started)
        log_warn("index: no checkpointer thread; commits checkpoint instead");
    *out = ix;
    return 0;
}

void index_close(struct index *ix)
{
    if (!ix)
        return;
    if (ix->ckpt_started) {
        pthread_mutex_lock(&ix->ckpt_lock);
        ix->ckpt_stop = true;
        pthread_cond_signal(&ix->ckpt_cond);
        pthread_mutex_unlock(&ix->ckpt_lock);
        pthread_join(ix->ckpt_thread, NULL);
    }
    while (ix->free_list) {
        struct conn *c = ix->free_list;
        ix->free_list = c->next;
        conn_free(c);
    }
    pthread_mutex_destroy(&ix->lock);
    pthread_cond_destroy(&ix->cond);
    free(ix->path);
    free(ix);
}

/* ---- helpers ---- */

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_blob(sqlite3_stmt *s, int i, const void *v, size_t n)
{
    if (v)
        sqlite3_bind_blob64(s, i, v, n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static int step_done(struct conn *c, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    log_debug("index: step: %s", sqlite3_errmsg(c->db));
    return rc == SQLITE_FULL ? -ENOSPC : -EIO;
}

static int step_pk(struct conn *c, sqlite3_stmt *s, int64_t *pk)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *pk = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    log_debug("index: step: %s", sqlite3_errmsg(c->db));
    return rc == SQLITE_FULL ? -ENOSPC : -EIO;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *norm_key(const char *s)
{
    if (!s)
        return NULL;
    struct buf b;
    buf_init(&b, (size_t)1 << 16);
    if (pn_normalize(s, strlen(s), &b) < 0) {
        buf_release(&b);
        return NULL;
    }
    /* drop trailing empty components of each group: "doe^john^^" -> "doe^john" */
    struct buf o;
    buf_init(&o, (size_t)1 << 16);
    const char *g = b.data ? b.data : "";
    for (;;) {
        const char *e = strchr(g, '=');
        size_t l = e ? (size_t)(e - g) : strlen(g);
        while (l && (g[l - 1] == '^' || g[l - 1] == ' '))
            l--;
        buf_append(&o, g, l);
        if (!e)
            break;
        buf_putc(&o, '=');
        g = e + 1;
    }
    buf_release(&b);
    char *r = buf_detach(&o, NULL);
    return r;
}

static int insert_pn_keys(struct conn *c, int64_t study_pk, const char *key)
{
    if (!key || !*key)
        return 0;
    sqlite3_stmt *s;
    int r = 0;
    const char *g = key;
    char cat[512];
    for (;;) {
        const char *ge = strchr(g, '=');
        size_t gl = ge ? (size_t)(ge - g) : strlen(g);
        if (gl) {
            s = stmt(c, ST_PN_KEY_INSERT);
            if (!s)
                return -EIO;
            sqlite3_bind_int64(s, 1, study_pk);
            sqlite3_bind_int(s, 2, 0);
            sqlite3_bind_text(s, 3, g, (int)gl, SQLITE_TRANSIENT);
            if ((r = step_done(c, s)) < 0)
                return r;
            size_t cl = 0, n_comp = 0;
            const char *p = g;
            while (p < g + gl) {
                const char *pe = p;
                while (pe < g + gl && *pe != '^' && *pe != ' ')
                    pe++;
                if (pe > p) {
                    s = stmt(c, ST_PN_KEY_INSERT);
                    if (!s)
                        return -EIO;
                    sqlite3_bind_int64(s, 1, study_pk);
                    sqlite3_bind_int(s, 2, 1);
                    sqlite3_bind_text(s, 3, p, (int)(pe - p), SQLITE_TRANSIENT);
                    if ((r = step_done(c, s)) < 0)
                        return r;
                    if (cl + (size_t)(pe - p) < sizeof(cat)) {
                        memcpy(cat + cl, p, (size_t)(pe - p));
                        cl += (size_t)(pe - p);
                    }
                    n_comp++;
                }
                p = pe + 1;
            }
            if (n_comp > 1 && cl) {
                s = stmt(c, ST_PN_KEY_INSERT);
                if (!s)
                    return -EIO;
                sqlite3_bind_int64(s, 1, study_pk);
                sqlite3_bind_int(s, 2, 1);
                sqlite3_bind_text(s, 3, cat, (int)cl, SQLITE_TRANSIENT);
                if ((r = step_done(c, s)) < 0)
                    return r;
            }
        }
        if (!ge)
            break;
        g = ge + 1;
    }
    return 0;
}

/* Normalises a DA value ("2020.01.02" -> "20200102"); returns malloc'ed. */
static char *norm_date(const char *s)
{
    if (!s)
        return NULL;
    char *o = malloc(strlen(s) + 1);
    if (!o)
        return NULL;
    size_t n = 0;
    for (const char *p = s; *p; p++)
        if (*p != '.' && *p != ' ' && *p != '-')
            o[n++] = *p;
    o[n] = 0;
    return o;
}

/* Normalises a TM value ("10:30:00" -> "103000"); returns malloc'ed. */
static char *norm_time(const char *s)
{
    if (!s)
        return NULL;
    char *o = malloc(strlen(s) + 1);
    if (!o)
        return NULL;
    size_t n = 0;
    for (const char *p = s; *p; p++)
        if (*p != ':' && *p != ' ')
            o[n++] = *p;
    o[n] = 0;
    return o;
}

struct touched {
    int64_t *v;
    size_t n, cap;
};

static int touch(struct touched *t, int64_t pk)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] == pk)
            return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        int64_t *nv = realloc(t->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        t->v = nv;
        t->cap = cap;
    }
    t->v[t->n++] = pk;
    return 0;
}

static int recount(struct conn *c, const struct touched *series, const struct touched *studies)
{
    int r;
    for (size_t i = 0; i < series->n; i++) {
        sqlite3_stmt *s = stmt(c, ST_SERIES_RECOUNT);
        if (!s)
            return -EIO;
        sqlite3_bind_int64(s, 1, series->v[i]);
        if ((r = step_done(c, s)) < 0)
            return r;
    }
    for (size_t i = 0; i < studies->n; i++) {
        sqlite3_stmt *s = stmt(c, ST_STUDY_RECOUNT);
        if (!s)
            return -EIO;
        sqlite3_bind_int64(s, 1, studies->v[i]);
        if ((r = step_done(c, s)) < 0)
            return r;
    }
    return 0;
}

static int put_one(struct conn *c, const struct index_put *it, struct touched *series_t,
                   struct touched *study_t)
{
    const struct inst *in = it->in;
    int64_t ts = it->mtime_ms ? it->mtime_ms : now_ms();
    int r;
    sqlite3_stmt *s;
    int64_t patient_pk, study_pk, series_pk, inst_pk;

    /* an instance stored again replaces the old row */
    s = stmt(c, ST_INSTANCE_FIND);
    if (!s)
        return -EIO;
    bind_text(s, 1, in->sop_uid);
    if (sqlite3_step(s) == SQLITE_ROW) {
        int64_t old = sqlite3_column_int64(s, 0);
        int64_t old_series = sqlite3_column_int64(s, 1);
        int64_t old_study = sqlite3_column_int64(s, 2);
        sqlite3_reset(s);
        if ((r = touch(series_t, old_series)) < 0 || (r = touch(study_t, old_study)) < 0)
            return r;
        s = stmt(c, ST_INSTANCE_DELETE);
        if (!s)
            return -EIO;
        sqlite3_bind_int64(s, 1, old);
        if ((r = step_done(c, s)) < 0)
            return r;
    }

    /* study: its attributes come from the instance with the smallest SOP
     * Instance UID seen, so that they do not depend on the order in which
     * instances arrive (a reindex gives the same answers as the STOWs) */
    s = stmt(c, ST_STUDY_FIND);
    if (!s)
        return -EIO;
    bind_text(s, 1, in->study_uid);
    bool study_attrs = false, study_new = false;
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        study_pk = sqlite3_column_int64(s, 0);
        const char *owner = (const char *)sqlite3_column_text(s, 1);
        study_attrs = !owner || strcmp(in->sop_uid, owner) < 0;
        sqlite3_reset(s);
        r = 0;
    } else if (r == SQLITE_DONE) {
        sqlite3_reset(s);
        study_attrs = study_new = true;
        r = 0;
    } else {
        sqlite3_reset(s);
        return -EIO;
    }
    if (study_attrs) {
        s = stmt(c, ST_PATIENT_UPSERT);
        if (!s)
            return -EIO;
        sqlite3_bind_text(s, 1, in->patient_id ? in->patient_id : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, in->issuer_of_patient_id ? in->issuer_of_patient_id : "", -1,
                          SQLITE_TRANSIENT);
        if ((r = step_pk(c, s, &patient_pk)) < 0)
            return r;
        char *name_key = norm_key(in->patient_name);
        char *ref_key = norm_key(in->referring_physician_name);
        char *sd = norm_date(in->study_date), *st = norm_time(in->study_time),
             *bd = norm_date(in->patient_birth_date);
        s = stmt(c, study_new ? ST_STUDY_INSERT : ST_STUDY_ATTRS);
        if (!s) {
            r = -EIO;
        } else {
            /* the two statements number their parameters alike, except
             * ?1: the study UID for an insert, the row for an update */
            if (study_new)
                bind_text(s, 1, in->study_uid);
            else
                sqlite3_bind_int64(s, 1, study_pk);
            sqlite3_bind_int64(s, 2, patient_pk);
            bind_text(s, 3, in->patient_name);
            bind_text(s, 4, name_key);
            bind_text(s, 5, in->patient_id);
            bind_text(s, 6, in->issuer_of_patient_id);
            bind_text(s, 7, bd);
            bind_text(s, 8, in->patient_sex);
            bind_text(s, 9, sd);
            bind_text(s, 10, st);
            bind_text(s, 11, in->accession_number);
            bind_text(s, 12, in->referring_physician_name);
            bind_text(s, 13, ref_key);
            bind_text(s, 14, in->study_description);
            bind_text(s, 15, in->study_id);
            bind_text(s, 16, in->institution_name);
            bind_text(s, 17, in->charset);
            bind_text(s, 18, NULL);
            bind_blob(s, 19, in->study_json.data, in->study_json.len);
            sqlite3_bind_int64(s, 20, ts);
            bind_text(s, 21, in->sop_uid);
            r = study_new ? step_pk(c, s, &study_pk) : step_done(c, s);
        }
        if (r == 0 && !study_new) {
            s = stmt(c, ST_PN_KEY_DELETE);
            if (!s)
                r = -EIO;
            else {
                sqlite3_bind_int64(s, 1, study_pk);
                r = step_done(c, s);
            }
        }
        if (r == 0)
            r = insert_pn_keys(c, study_pk, name_key);
        free(name_key);
        free(ref_key);
        free(sd);
        free(st);
        free(bd);
        if (r < 0)
            return r;
    } else {
        s = stmt(c, ST_STUDY_FILL);
        if (!s)
            return -EIO;
        sqlite3_bind_int64(s, 1, study_pk);
        sqlite3_bind_int64(s, 2, ts);
        if ((r = step_done(c, s)) < 0)
            return r;
    }
    if ((r = touch(study_t, study_pk)) < 0)
        return r;

    /* series */
    s = stmt(c, ST_SERIES_FIND);
    if (!s)
        return -EIO;
    bind_text(s, 1, in->series_uid);
    int rc = sqlite3_step(s);
    bool series_attrs = false, series_new = false;
    if (rc == SQLITE_ROW) {
        series_pk = sqlite3_column_int64(s, 0);
        int64_t owner = sqlite3_column_int64(s, 1);
        const char *attr_sop = (const char *)sqlite3_column_text(s, 2);
        series_attrs = !attr_sop || strcmp(in->sop_uid, attr_sop) < 0;
        sqlite3_reset(s);
        if (owner != study_pk)
            return -EEXIST; /* series UID already used by another study */
    } else if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        series_attrs = series_new = true;
    } else {
        sqlite3_reset(s);
        return -EIO;
    }
    if (series_attrs) {
        char *sd = norm_date(in->series_date), *st = norm_time(in->series_time),
             *pd = norm_date(in->pps_start_date), *pt = norm_time(in->pps_start_time);
        s = stmt(c, series_new ? ST_SERIES_INSERT : ST_SERIES_ATTRS);
        if (!s) {
            r = -EIO;
        } else {
            if (series_new)
                bind_text(s, 1, in->series_uid);
            else
                sqlite3_bind_int64(s, 1, series_pk);
            sqlite3_bind_int64(s, 2, study_pk);
            bind_text(s, 3, in->modality);
            if (in->has_series_number)
                sqlite3_bind_int64(s, 4, in->series_number);
            bind_text(s, 5, in->series_description);
            bind_text(s, 6, in->body_part);
            bind_text(s, 7, sd);
            bind_text(s, 8, st);
            bind_text(s, 9, pd);
            bind_text(s, 10, pt);
            bind_text(s, 11, in->station_name);
            bind_text(s, 12, in->frame_of_reference_uid);
            bind_blob(s, 13, in->series_json.data, in->series_json.len);
            sqlite3_bind_int64(s, 14, ts);
            bind_text(s, 15, in->sop_uid);
            r = series_new ? step_pk(c, s, &series_pk) : step_done(c, s);
        }
        free(sd);
        free(st);
        free(pd);
        free(pt);
        if (r < 0)
            return r;
    } else {
        s = stmt(c, ST_SERIES_FILL);
        if (!s)
            return -EIO;
        sqlite3_bind_int64(s, 1, series_pk);
        sqlite3_bind_int64(s, 2, ts);
        if ((r = step_done(c, s)) < 0)
            return r;
    }
    if ((r = touch(series_t, series_pk)) < 0)
        return r;

    /* instance */
    s = stmt(c, ST_INSTANCE_INSERT);
    if (!s)
        return -EIO;
    bind_text(s, 1, in->sop_uid);
    sqlite3_bind_int64(s, 2, series_pk);
    sqlite3_bind_int64(s, 3, study_pk);
    bind_text(s, 4, in->sop_class_uid);
    if (in->has_instance_number)
        sqlite3_bind_int64(s, 5, in->instance_number);
    if (in->n_frames)
        sqlite3_bind_int64(s, 6, in->n_frames);
    if (in->rows)
        sqlite3_bind_int64(s, 7, in->rows);
    if (in->cols)
        sqlite3_bind_int64(s, 8, in->cols);
    if (in->layout.bits_alloc)
        sqlite3_bind_int64(s, 9, in->layout.bits_alloc);
    bind_text(s, 10, in->ts_uid);
    bind_text(s, 11, it->rel_path);
    sqlite3_bind_int64(s, 12, (sqlite3_int64)it->size);
    sqlite3_bind_int64(s, 13, ts);
    if ((r = step_pk(c, s, &inst_pk)) < 0)
        return r;

    if (!it->meta || !it->meta_len)
        return -EINVAL;
    s = stmt(c, ST_DATA_INSERT);
    if (!s)
        return -EIO;
    sqlite3_bind_int64(s, 1, inst_pk);
    bind_blob(s, 2, it->meta, it->meta_len);
    bind_blob(s, 3, in->layout_blob.data ? in->layout_blob.data : "", in->layout_blob.len);
    return step_done(c, s);
}

int index_put_many(struct index *ix, const struct index_put *items, size_t n, int *results,
                   int (*before_commit)(void *ctx), void *ctx)
{
    struct conn *c = acquire(ix);
    if (!c) {
        for (size_t i = 0; i < n; i++)
            results[i] = -EIO;
        return -EIO;
    }
    struct touched series_t = {0}, study_t = {0};
    /* connections sync every commit (FULL) but while committing a batch
     * that may be lost (index.h) */
    bool lazy = true;
    for (size_t i = 0; i < n; i++)
        lazy = lazy && !items[i].durable;
    sqlite3_stmt *s = lazy ? stmt(c, ST_SYNC_NORMAL) : NULL;
    if (s)
        (void)step_done(c, s);
    s = stmt(c, ST_BEGIN);
    int r = s ? step_done(c, s) : -EIO;
    for (size_t i = 0; i < n && r == 0; i++) {
        s = stmt(c, ST_SAVEPOINT);
        if (!s || (r = step_done(c, s)) < 0) {
            r = r < 0 ? r : -EIO;
            break;
        }
        results[i] = put_one(c, &items[i], &series_t, &study_t);
        if (results[i] < 0) {
            s = stmt(c, ST_ROLLBACK_TO);
            if (s)
                (void)step_done(c, s);
            if (results[i] == -ENOSPC || results[i] == -ENOMEM)
                r = results[i];
        }
        if (r == 0) {
            s = stmt(c, ST_RELEASE);
            r = s ? step_done(c, s) : -EIO;
        }
    }
    if (r == 0)
        r = recount(c, &series_t, &study_t);
    if (r == 0 && before_commit)
        r = before_commit(ctx);
    if (r == 0) {
        s = stmt(c, ST_COMMIT);
        r = s ? step_done(c, s) : -EIO;
    }
    if (r < 0) {
        s = stmt(c, ST_ROLLBACK);
        if (s)
            (void)sqlite3_step(s);
        for (size_t i = 0; i < n; i++)
            results[i] = r;
    }
    free(series_t.v);
    free(study_t.v);
    atomic_fetch_add(&ix->write_gen, 1);
    s = lazy ? stmt(c, ST_SYNC_FULL) : NULL;
    if (lazy && (!s || step_done(c, s) < 0)) {
        /* a connection that might not sync must not serve another write */
        log_error("index: cannot restore synchronous=FULL; connection closed");
        drop(ix, c);
    } else {
        release(ix, c);
    }
    return r;
}

int index_recent_paths(struct index *ix, int64_t window_ms, int64_t *newest_ms,
                       int (*fn)(void *ctx, const char *rel), void *ctx)
{
    *newest_ms = 0;
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    sqlite3_stmt *s = NULL;
    int r = 0;
    if (sqlite3_prepare_v2(c->db, "SELECT created_ms, rel_path FROM instance ORDER BY pk DESC",
                           -1, &s, NULL) != SQLITE_OK) {
        release(ix, c);
        return -EIO;
    }
    int rc = SQLITE_DONE;
    while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t ms = sqlite3_column_int64(s, 0);
        if (*newest_ms == 0)
            *newest_ms = ms > 0 ? ms : 1;
        else if (ms < *newest_ms - window_ms)
            break;
        const char *rel = (const char *)sqlite3_column_text(s, 1);
        if (rel)
            r = fn(ctx, rel);
    }
    if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(s);
    release(ix, c);
    return r;
}

uint64_t index_write_gen(struct index *ix)
{
    return atomic_load(&ix->write_gen);
}

/* ---- lookups ---- */

static const char *col_dup(struct arena *a, sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t)
        return NULL;
    return arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

static const void *blob_dup(struct arena *a, sqlite3_stmt *s, int i, size_t *len)
{
    const void *b = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    *len = n;
    if (!b)
        return NULL;
    void *p = arena_alloc(a, n ? n : 1);
    if (p)
        memcpy(p, b, n);
    return p;
}

int index_get_instance(struct index *ix, const char *sop_uid, bool with_layout, struct arena *a,
                       struct index_instance *out)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    memset(out, 0, sizeof(*out));
    int r = 0;
    sqlite3_stmt *s = stmt(c, with_layout ? ST_GET_INSTANCE_LAYOUT : ST_GET_INSTANCE);
    if (!s) {
        r = -EIO;
        goto out;
    }
    bind_text(s, 1, sop_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        r = -ENOENT;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        r = -EIO;
        goto out;
    }
    out->pk = sqlite3_column_int64(s, 0);
    out->study_uid = col_dup(a, s, 1);
    out->series_uid = col_dup(a, s, 2);
    out->sop_uid = col_dup(a, s, 3);
    out->sop_class_uid = col_dup(a, s, 4);
    out->ts_uid = col_dup(a, s, 5);
    out->rel_path = col_dup(a, s, 6);
    out->size = (uint64_t)sqlite3_column_int64(s, 7);
    out->n_frames = (uint32_t)sqlite3_column_int64(s, 8);
    out->created_ms = sqlite3_column_int64(s, 9);
    if (with_layout && sqlite3_column_type(s, 10) == SQLITE_BLOB)
        out->layout = blob_dup(a, s, 10, &out->layout_len);
    if (!out->rel_path || !out->study_uid || (out->layout_len && !out->layout))
        r = -ENOMEM;
out:
    release(ix, c);
    return r;
}

int index_series_study(struct index *ix, const char *series_uid, char study_uid[INDEX_UID_MAX])
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    int r = -EIO;
    study_uid[0] = 0;
    sqlite3_stmt *s = stmt(c, ST_SERIES_STUDY);
    if (s) {
        bind_text(s, 1, series_uid);
        int rc = sqlite3_step(s);
        const unsigned char *v = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
        if (rc == SQLITE_DONE)
            r = -ENOENT;
        else if (v && strlen((const char *)v) < INDEX_UID_MAX)
            r = snprintf(study_uid, INDEX_UID_MAX, "%s", (const char *)v) < 0 ? -EIO : 0;
        sqlite3_reset(s);
    }
    release(ix, c);
    return r;
}

/* ---- scope iteration ---- */

struct index_iter {
    struct index *ix;
    struct conn *c;
    sqlite3_stmt *s;
    bool with_meta, with_layout;
};

static int scope_where(const struct index_scope *sc, struct buf *sql)
{
    int r = buf_puts(sql, " WHERE 1");
    if (sc->study_uid)
        r |= buf_puts(sql, " AND s.study_uid = ?1");
    if (sc->series_uid)
        r |= buf_puts(sql, " AND se.series_uid = ?2");
    if (sc->sop_uid)
        r |= buf_puts(sql, " AND i.sop_uid = ?3");
    return r ? -ENOMEM : 0;
}

static void scope_bind(sqlite3_stmt *s, const struct index_scope *sc)
{
    if (sc->study_uid)
        sqlite3_bind_text(s, 1, sc->study_uid, -1, SQLITE_TRANSIENT);
    if (sc->series_uid)
        sqlite3_bind_text(s, 2, sc->series_uid, -1, SQLITE_TRANSIENT);
    if (sc->sop_uid)
        sqlite3_bind_text(s, 3, sc->sop_uid, -1, SQLITE_TRANSIENT);
}

int index_iter_open(struct index *ix, const struct index_scope *sc, bool with_meta,
                    bool with_layout, struct index_iter **out)
{
    struct index_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->ix = ix;
    it->with_meta = with_meta;
    it->with_layout = with_layout;
    it->c = acquire(ix);
    if (!it->c) {
        free(it);
        return -EIO;
    }
    struct buf sql;
    buf_init(&sql, 0);
    int r = buf_printf(&sql,
                       "SELECT i.pk, s.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, "
                       "i.ts_uid, i.rel_path, i.size, i.n_frames, i.created_ms%s%s "
                       "FROM instance i JOIN series se ON se.pk = i.series_fk "
                       "JOIN study s ON s.pk = i.study_fk%s",
                       with_meta ? ", d.meta" : ", NULL", with_layout ? ", d.layout" : ", NULL",
                       with_meta || with_layout ? " JOIN instance_data d ON d.pk = i.pk" : "");
    if (r == 0)
        r = scope_where(sc, &sql);
    if (r == 0)
        r = buf_puts(&sql, " ORDER BY se.series_number, se.series_uid, i.instance_number, i.sop_uid");
    if (r == 0 && sqlite3_prepare_v2(it->c->db, sql.data, -1, &it->s, NULL) != SQLITE_OK)
        r = -EIO;
    buf_release(&sql);
    if (r < 0) {
        index_iter_close(it);
        return r;
    }
    scope_bind(it->s, sc);
    *out = it;
    return 0;
}

int index_iter_next(struct index_iter *it, struct index_instance *row)
{
    int rc = sqlite3_step(it->s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return -EIO;
    sqlite3_stmt *s = it->s;
    memset(row, 0, sizeof(*row));
    row->pk = sqlite3_column_int64(s, 0);
    row->study_uid = (const char *)sqlite3_column_text(s, 1);
    row->series_uid = (const char *)sqlite3_column_text(s, 2);
    row->sop_uid = (const char *)sqlite3_column_text(s, 3);
    row->sop_class_uid = (const char *)sqlite3_column_text(s, 4);
    row->ts_uid = (const char *)sqlite3_column_text(s, 5);
    row->rel_path = (const char *)sqlite3_column_text(s, 6);
    row->size = (uint64_t)sqlite3_column_int64(s, 7);
    row->n_frames = (uint32_t)sqlite3_column_int64(s, 8);
    row->created_ms = sqlite3_column_int64(s, 9);
    row->meta = sqlite3_column_blob(s, 10);
    row->meta_len = (size_t)sqlite3_column_bytes(s, 10);
    row->layout = sqlite3_column_blob(s, 11);
    row->layout_len = (size_t)sqlite3_column_bytes(s, 11);
    return 1;
}

void index_iter_close(struct index_iter *it)
{
    if (!it)
        return;
    sqlite3_finalize(it->s);
    release(it->ix, it->c);
    free(it);
}

int index_scope_stat(struct index *ix, const struct index_scope *sc, uint64_t *count,
                     int64_t *max_ms, int64_t *sum_pk)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    struct buf sql;
    buf_init(&sql, 0);
    sqlite3_stmt *s = NULL;
    int r = buf_puts(&sql, "SELECT count(*), max(i.created_ms), total(i.pk) FROM instance i "
                           "JOIN series se ON se.pk = i.series_fk "
                           "JOIN study s ON s.pk = i.study_fk");
    if (r == 0)
        r = scope_where(sc, &sql);
    if (r == 0 && sqlite3_prepare_v2(c->db, sql.data, -1, &s, NULL) != SQLITE_OK)
        r = -EIO;
    if (r == 0) {
        scope_bind(s, sc);
        if (sqlite3_step(s) == SQLITE_ROW) {
            *count = (uint64_t)sqlite3_column_int64(s, 0);
            *max_ms = sqlite3_column_int64(s, 1);
            *sum_pk = (int64_t)sqlite3_column_double(s, 2);
            if (*count == 0)
                r = -ENOENT;
        } else {
            r = -EIO;
        }
    }
    sqlite3_finalize(s);
    buf_release(&sql);
    release(ix, c);
    return r;
}

/* ---- QIDO ---- */

enum ctype { CT_TEXT, CT_UID, CT_DATE, CT_TIME, CT_PN, CT_INT, CT_MODALITIES };

struct colmap {
    uint32_t tag;
    enum index_level level;
    enum ctype type;
    const char *col;
    const char *key_col; /* PN: normalised key column */
};

static const struct colmap g_cols[] = {
    {0x0020000D, INDEX_STUDY, CT_UID, "s.study_uid", NULL},
    {0x00080020, INDEX_STUDY, CT_DATE, "s.study_date", NULL},
    {0x00080030, INDEX_STUDY, CT_TIME, "s.study_time", NULL},
    {0x00080050, INDEX_STUDY, CT_TEXT, "s.accession", NULL},
    {0x00080061, INDEX_STUDY, CT_MODALITIES, "s.modalities", NULL},
    {0x00080080, INDEX_STUDY, CT_TEXT, "s.institution", NULL},
    {0x00080090, INDEX_STUDY, CT_PN, "s.referring", "s.referring_key"},
    {0x00081030, INDEX_STUDY, CT_TEXT, "s.description", NULL},
    {0x00100010, INDEX_STUDY, CT_PN, "s.patient_name", "s.patient_name_key"},
    {0x00100020, INDEX_STUDY, CT_TEXT, "s.patient_id", NULL},
    {0x00100021, INDEX_STUDY, CT_TEXT, "s.issuer", NULL},
    {0x00100030, INDEX_STUDY, CT_DATE, "s.patient_birth_date", NULL},
    {0x00100040, INDEX_STUDY, CT_TEXT, "s.patient_sex", NULL},
    {0x00200010, INDEX_STUDY, CT_TEXT, "s.study_id", NULL},
    {0x00201206, INDEX_STUDY, CT_INT, "s.n_series", NULL},
    {0x00201208, INDEX_STUDY, CT_INT, "s.n_instances", NULL},
    {0x0020000E, INDEX_SERIES, CT_UID, "se.series_uid", NULL},
    {0x00080021, INDEX_SERIES, CT_DATE, "se.series_date", NULL},
    {0x00080031, INDEX_SERIES, CT_TIME, "se.series_time", NULL},
    {0x00080060, INDEX_SERIES, CT_TEXT, "se.modality", NULL},
    {0x0008103E, INDEX_SERIES, CT_TEXT, "se.description", NULL},
    {0x00081010, INDEX_SERIES, CT_TEXT, "se.station", NULL},
    {0x00180015, INDEX_SERIES, CT_TEXT, "se.body_part", NULL},
    {0x00200011, INDEX_SERIES, CT_INT, "se.series_number", NULL},
    {0x00200052, INDEX_SERIES, CT_UID, "se.frame_of_reference", NULL},
    {0x00201209, INDEX_SERIES, CT_INT, "se.n_instances", NULL},
    {0x00400244, INDEX_SERIES, CT_DATE, "se.pps_start_date", NULL},
    {0x00400245, INDEX_SERIES, CT_TIME, "se.pps_start_time", NULL},
    {0x00080016, INDEX_INSTANCE, CT_UID, "i.sop_class_uid", NULL},
    {0x00080018, INDEX_INSTANCE, CT_UID, "i.sop_uid", NULL},
    {0x00200013, INDEX_INSTANCE, CT_INT, "i.instance_number", NULL},
    {0x00280008, INDEX_INSTANCE, CT_INT, "i.n_frames", NULL},
    {0x00280010, INDEX_INSTANCE, CT_INT, "i.rows", NULL},
    {0x00280011, INDEX_INSTANCE, CT_INT, "i.cols", NULL},
    {0x00280100, INDEX_INSTANCE, CT_INT, "i.bits_alloc", NULL},
};

static const struct colmap *find_col(enum index_level level, uint32_t tag)
{
    for (size_t i = 0; i < YY_ARRAY_LEN(g_cols); i++)
        if (g_cols[i].tag == tag && g_cols[i].level <= level)
            return &g_cols[i];
    return NULL;
}

bool index_can_match(enum index_level level, uint32_t tag, bool *pn)
{
    const struct colmap *c = find_col(level, tag);
    if (pn)
        *pn = c && c->type == CT_PN;
    return c != NULL;
}

bool index_can_order(enum index_level level, uint32_t tag)
{
    const struct colmap *c = find_col(level, tag);
    return c && c->type != CT_MODALITIES;
}

struct index_cursor {
    struct index *ix;
    struct conn *c;
    sqlite3_stmt *s;
    enum index_level level;
};

/* Translates a DICOM wildcard value into a GLOB pattern ('[' escaped). */
static bool pn_prefix_pattern(const char *v);

static int glob_pattern(const char *v, struct buf *out)
{
    int r = 0;
    for (const char *p = v; *p && r == 0; p++) {
        if (*p == '[')
            r = buf_puts(out, "[[]");
        else
            r = buf_putc(out, *p);
    }
    return r;
}

/* Binding plan: values to bind in order of ?NNN placeholders. */
struct binds {
    const char *v[INDEX_MAX_MATCH * 4 + INDEX_MAX_LIST + 8];
    unsigned n;
    char *owned[INDEX_MAX_MATCH * 4 + 8]; /* malloc'ed values to free */
    unsigned n_owned;
};

static int bind_add(struct binds *b, const char *v, bool owned, struct buf *sql)
{
    if (b->n >= YY_ARRAY_LEN(b->v) || (owned && b->n_owned >= YY_ARRAY_LEN(b->owned)))
        return -E2BIG;
    b->v[b->n++] = v;
    if (owned)
        b->owned[b->n_owned++] = (char *)v;
    return buf_printf(sql, "?%u", b->n);
}

static char *dup_norm_range(const char *v, enum ctype t)
{
    if (!v)
        return NULL;
    return t == CT_TIME ? norm_time(v) : norm_date(v);
}

static int where_match(const struct index_match *m, const struct colmap *cm, struct binds *b,
                       struct buf *sql, char *err, size_t err_cap)
{
    int r = 0;
    if (m->kind == MATCH_EMPTY)
        return 0;
    r = buf_puts(sql, " AND ");
    if (r < 0)
        return r;
    if (cm->type == CT_MODALITIES) {
        /* ModalitiesInStudy: any series of the study matches */
        r = buf_puts(sql, "EXISTS (SELECT 1 FROM series m WHERE m.study_fk = s.pk AND ");
        if (m->kind == MATCH_LIST) {
            r |= buf_puts(sql, "m.modality IN (");
            for (unsigned i = 0; i < m->n_list && r == 0; i++) {
                if (i)
                    r = buf_putc(sql, ',');
                if (r == 0)
                    r = bind_add(b, m->list[i], false, sql);
            }
            r |= buf_puts(sql, "))");
        } else if (m->kind == MATCH_WILDCARD) {
            struct buf g;
            buf_init(&g, 4096);
            r = glob_pattern(m->value, &g);
            r |= buf_puts(sql, "m.modality GLOB ");
            if (r == 0)
                r = bind_add(b, buf_detach(&g, NULL), true, sql);
            else
                buf_release(&g);
            r |= buf_putc(sql, ')');
        } else {
            r |= buf_puts(sql, "m.modality = ");
            r |= bind_add(b, m->value, false, sql);
            r |= buf_putc(sql, ')');
        }
        return r;
    }
    switch (m->kind) {
    case MATCH_LIST:
        r = buf_printf(sql, "%s IN (", cm->col);
        for (unsigned i = 0; i < m->n_list && r == 0; i++) {
            if (i)
                r = buf_putc(sql, ',');
            if (r == 0)
                r = bind_add(b, m->list[i], false, sql);
        }
        if (r == 0)
            r = buf_putc(sql, ')');
        return r;
    case MATCH_RANGE: {
        if (cm->type != CT_DATE && cm->type != CT_TIME) {
            snprintf(err, err_cap, "a range is not allowed for this attribute");
            return -EINVAL;
        }
        char *lo = dup_norm_range(m->lo, cm->type);
        char *hi = dup_norm_range(m->hi, cm->type);
        r = buf_printf(sql, "(%s IS NOT NULL", cm->col);
        if (lo) {
            r |= buf_printf(sql, " AND %s >= ", cm->col);
            r |= bind_add(b, lo, true, sql);
        }
        if (hi) {
            /* an upper bound covers everything it is a prefix of: "1000"
             * includes "100030.5" (PS3.4 C.2.2.2.5) */
            size_t hl = strlen(hi);
            char *hx = realloc(hi, hl + 2);
            if (!hx) {
                free(hi);
                free(lo);
                return -ENOMEM;
            }
            hx[hl] = '~';
            hx[hl + 1] = 0;
            r |= buf_printf(sql, " AND %s < ", cm->col);
            r |= bind_add(b, hx, true, sql);
        }
        r |= buf_putc(sql, ')');
        return r;
    }
    case MATCH_WILDCARD: {
        if (cm->type == CT_INT) {
            snprintf(err, err_cap, "wildcards are not allowed for this attribute");
            return -EINVAL;
        }
        if (cm->type == CT_PN) {
            /* case-insensitive: the pattern was normalised by the caller */
            if (strcmp(cm->col, "s.patient_name") == 0) {
                /* "ZHANG*" (a literal prefix, no '='): every name group has
                 * its own key in pn_key, so that index alone answers; any
                 * other pattern may span groups and needs the whole key */
                bool prefix = pn_prefix_pattern(m->value);
                r = prefix ? buf_puts(sql, "(0 AND ") : buf_printf(sql, "(%s GLOB ", cm->key_col);
                struct buf g;
                buf_init(&g, 4096);
                r |= glob_pattern(m->value, &g);
                char *gp = buf_detach(&g, NULL);
                r |= bind_add(b, gp, true, sql);
                r |= buf_puts(sql, " OR s.pk IN (SELECT study_fk FROM pn_key WHERE kind = 0 AND "
                                   "key GLOB ");
                r |= buf_printf(sql, "?%u))", b->n);
                return r;
            }
            r = buf_printf(sql, "dicom_wild(");
            r |= bind_add(b, m->value, false, sql);
            r |= buf_printf(sql, ", %s)", cm->key_col);
            return r;
        }
        struct buf g;
        buf_init(&g, 4096);
        r = glob_pattern(m->value, &g);
        r |= buf_printf(sql, "%s GLOB ", cm->col);
        r |= bind_add(b, buf_detach(&g, NULL), true, sql);
        return r;
    }
    case MATCH_FUZZY: {
        if (cm->type != CT_PN)
            return buf_puts(sql, "1");
        if (strcmp(cm->col, "s.patient_name") == 0) {
            /* every word is a prefix of some component (indexed) */
            r = buf_puts(sql, "(1");
            const char *q = m->value;
            while (*q && r == 0) {
                while (*q == ' ' || *q == '^' || *q == ',' || *q == '=')
                    q++;
                const char *e = q;
                while (*e && *e != ' ' && *e != '^' && *e != ',' && *e != '=')
                    e++;
                if (e > q) {
                    struct buf g;
                    buf_init(&g, 4096);
                    char *w = strndup(q, (size_t)(e - q));
                    if (!w)
                        return -ENOMEM;
                    r = glob_pattern(w, &g);
                    free(w);
                    r |= buf_putc(&g, '*');
                    r |= buf_puts(sql, " AND s.pk IN (SELECT study_fk FROM pn_key WHERE kind = 1 "
                                       "AND key GLOB ");
                    r |= bind_add(b, buf_detach(&g, NULL), true, sql);
                    r |= buf_putc(sql, ')');
                }
                q = e;
            }
            r |= buf_putc(sql, ')');
            return r;
        }
        r = buf_printf(sql, "pn_fuzzy(%s, ", cm->key_col);
        r |= bind_add(b, m->value, false, sql);
        r |= buf_putc(sql, ')');
        return r;
    }
    case MATCH_SINGLE:
    default:
        if (cm->type == CT_PN) {
            if (strcmp(cm->col, "s.patient_name") == 0) {
                r = buf_printf(sql, "(%s = ", cm->key_col);
                r |= bind_add(b, m->value, false, sql);
                r |= buf_printf(sql, " OR s.pk IN (SELECT study_fk FROM pn_key WHERE kind = 0 AND "
                                     "key = ?%u))",
                                b->n);
                return r;
            }
            r = buf_printf(sql, "%s = ", cm->key_col);
            return r | bind_add(b, m->value, false, sql);
        }
        if (cm->type == CT_DATE || cm->type == CT_TIME) {
            char *v = dup_norm_range(m->value, cm->type);
            if (!v)
                return -ENOMEM;
            if (cm->type == CT_TIME) {
                /* "1030" matches 10:30:xx */
                r = buf_printf(sql, "substr(%s, 1, length(", cm->col);
                r |= bind_add(b, v, true, sql);
                r |= buf_printf(sql, ")) = ?%u", b->n);
                return r;
            }
            r = buf_printf(sql, "%s = ", cm->col);
            return r | bind_add(b, v, true, sql);
        }
        r = buf_printf(sql, "%s = ", cm->col);
        return r | bind_add(b, m->value, false, sql);
    }
}

/* "ZHANG*": a literal prefix without '=' (see where_match). */
static bool pn_prefix_pattern(const char *v)
{
    size_t vl = strlen(v), lit = strcspn(v, "*?=\\");
    return vl >= 2 && lit == vl - 1 && v[vl - 1] == '*';
}

/* Which plan finds a page of studies matching a name prefix faster:
 * walking the date order and testing each study (it stops after `want`
 * matches, having read about want * studies / matches index entries), or
 * looking up every match and sorting them (a row lookup costs about 16
 * index entries). Counts the matches (up to a bound) to choose. True:
 * look the matches up. */
static bool pn_prefix_by_matches(struct conn *c, const char *value, uint64_t want)
{
    struct buf g;
    buf_init(&g, 4096);
    if (glob_pattern(value, &g) < 0) {
        buf_release(&g);
        return false;
    }
    sqlite3_stmt *st = stmt(c, ST_PN_PREFIX_COUNT);
    long long n = -1, total = 0;
    if (st) {
        sqlite3_bind_text(st, 1, g.data ? g.data : "", -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            n = sqlite3_column_int64(st, 0);
            total = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    buf_release(&g);
    if (n < 0 || n >= 20000)
        return false;
    if (n == 0)
        return true;
    return (double)n * 16 < (double)want * (double)total / (double)n;
}

static const char *g_select_study =
    "s.study_uid, s.study_date, s.study_time, s.accession, s.referring, s.patient_name, "
    "s.patient_id, s.patient_birth_date, s.patient_sex, s.study_id, s.description, "
    "s.modalities, s.charset, s.timezone, s.n_series, s.n_instances, s.json";
static const char *g_select_series =
    ", se.series_uid, se.modality, se.description, se.pps_start_date, se.pps_start_time, "
    "se.series_number, se.n_instances, se.json";
static const char *g_select_instance =
    ", i.sop_uid, i.sop_class_uid, i.instance_number, i.n_frames, i.rows, i.cols, i.bits_alloc, "
    "i.ts_uid, d.meta";

int index_query_open(struct index *ix, const struct index_query *q, struct index_cursor **out,
                     char *err, size_t err_cap)
{
    struct buf sql;
    buf_init(&sql, (size_t)1 << 20);
    struct binds *b = calloc(1, sizeof(*b));
    struct index_cursor *cur = calloc(1, sizeof(*cur));
    int r = b && cur ? 0 : -ENOMEM;
    if (r < 0)
        goto fail;
    cur->ix = ix;
    cur->level = q->level;
    /* Two steps: the inner query finds and orders the page (row keys and
     * order columns only, mostly from covering indexes); the outer one
     * fetches the wide rows of that page alone, so the sorter never carries
     * JSON or metadata blobs of rows that are not returned. */
    const char *ord_expr[INDEX_MAX_ORDER + 8];
    bool ord_desc[INDEX_MAX_ORDER + 8];
    unsigned n_ord = 0;
    for (unsigned i = 0; i < q->n_order; i++) {
        const struct colmap *cm = find_col(q->level, q->order[i].tag);
        if (!cm || cm->type == CT_MODALITIES) {
            snprintf(err, err_cap, "ordering by (%04X,%04X) is not supported",
                     q->order[i].tag >> 16, q->order[i].tag & 0xFFFF);
            r = -EINVAL;
            goto fail;
        }
        ord_expr[n_ord] = cm->type == CT_PN ? cm->key_col : cm->col;
        ord_desc[n_ord++] = q->order[i].desc;
    }
    /* deterministic, and the same after a reindex: ties break on UIDs */
    static const char *const tail[] = {"s.study_date", "s.study_time", "s.study_uid",
                                       "se.series_number", "se.series_uid",
                                       "i.instance_number", "i.sop_uid"};
    static const bool tail_desc[] = {true, true, false, false, false, false, false};
    unsigned n_tail = q->level == INDEX_STUDY ? 3 : q->level == INDEX_SERIES ? 5 : 7;
    for (unsigned i = 0; i < n_tail; i++) {
        ord_expr[n_ord] = tail[i];
        ord_desc[n_ord++] = tail_desc[i];
    }
    cur->c = acquire(ix);
    if (!cur->c) {
        r = -EIO;
        goto fail;
    }
    /* a rare name prefix: drive the page from its matches, not the order */
    bool by_matches = false;
    for (unsigned i = 0; i < q->n_match; i++) {
        const struct index_match *mm = &q->match[i];
        if (mm->tag == 0x00100010 && mm->kind == MATCH_WILDCARD && pn_prefix_pattern(mm->value) &&
            pn_prefix_by_matches(cur->c, mm->value, (uint64_t)q->limit + q->offset))
            by_matches = true;
    }
    r = buf_puts(&sql, "SELECT s.pk AS k0");
    if (q->level >= INDEX_SERIES)
        r |= buf_puts(&sql, ", se.pk AS k1");
    if (q->level >= INDEX_INSTANCE)
        r |= buf_puts(&sql, ", i.pk AS k2");
    for (unsigned i = 0; i < n_ord; i++)
        r |= buf_printf(&sql, ", %s AS o%u", ord_expr[i], i);
    r |= buf_puts(&sql, " FROM ");
    if (q->level == INDEX_STUDY)
        r |= buf_puts(&sql, "study s WHERE 1");
    else if (q->level == INDEX_SERIES)
        r |= buf_puts(&sql, "series se JOIN study s ON s.pk = se.study_fk WHERE 1");
    else
        r |= buf_puts(&sql, "instance i JOIN series se ON se.pk = i.series_fk "
                            "JOIN study s ON s.pk = i.study_fk WHERE 1");
    if (r < 0)
        goto fail;
    if (q->study_uid) {
        r = buf_puts(&sql, " AND s.study_uid = ");
        r |= bind_add(b, q->study_uid, false, &sql);
    }
    if (q->series_uid && q->level >= INDEX_SERIES) {
        r |= buf_puts(&sql, " AND se.series_uid = ");
        r |= bind_add(b, q->series_uid, false, &sql);
    }
    for (unsigned i = 0; i < q->n_match && r == 0; i++) {
        const struct colmap *cm = find_col(q->level, q->match[i].tag);
        if (!cm) {
            snprintf(err, err_cap, "matching on (%04X,%04X) is not supported at this level",
                     q->match[i].tag >> 16, q->match[i].tag & 0xFFFF);
            r = -EINVAL;
            goto fail;
        }
        r = where_match(&q->match[i], cm, b, &sql, err, err_cap);
    }
    if (r < 0)
        goto fail;
    r = buf_puts(&sql, " ORDER BY ");
    /* "+expr" keeps SQLite from walking an index in that order */
    for (unsigned i = 0; i < n_ord && r == 0; i++)
        r = buf_printf(&sql, "%s%s%s %s", i ? ", " : "", by_matches && i == 0 ? "+" : "",
                       ord_expr[i], ord_desc[i] ? "DESC" : "ASC");
    r |= buf_printf(&sql, " LIMIT %u OFFSET %u", q->limit, q->offset);
    /* the outer query: the page's wide rows, in the same order */
    struct buf outer;
    buf_init(&outer, (size_t)1 << 20);
    r |= buf_printf(&outer, "SELECT %s%s%s FROM (%s) t JOIN study s ON s.pk = t.k0", g_select_study,
                    q->level >= INDEX_SERIES ? g_select_series : "",
                    q->level >= INDEX_INSTANCE ? g_select_instance : "", sql.data ? sql.data : "");
    if (q->level >= INDEX_SERIES)
        r |= buf_puts(&outer, " JOIN series se ON se.pk = t.k1");
    if (q->level >= INDEX_INSTANCE)
        r |= buf_puts(&outer, " JOIN instance i ON i.pk = t.k2 JOIN instance_data d ON d.pk = i.pk");
    r |= buf_puts(&outer, " ORDER BY ");
    for (unsigned i = 0; i < n_ord && r == 0; i++)
        r = buf_printf(&outer, "%st.o%u %s", i ? ", " : "", i, ord_desc[i] ? "DESC" : "ASC");
    buf_release(&sql);
    sql = outer;
    if (r < 0)
        goto fail;
    for (unsigned i = 0; i < QCACHE_N && !cur->s; i++) {
        sqlite3_stmt *cs = cur->c->qcache[i];
        if (cs && strcmp(sqlite3_sql(cs), sql.data) == 0) {
            cur->s = cs;
            cur->c->qcache[i] = NULL;
        }
    }
    if (!cur->s && sqlite3_prepare_v2(cur->c->db, sql.data, -1, &cur->s, NULL) != SQLITE_OK) {
        log_debug("index: qido prepare: %s: %s", sql.data, sqlite3_errmsg(cur->c->db));
        snprintf(err, err_cap, "query could not be prepared");
        r = -EIO;
        goto fail;
    }
    for (unsigned i = 0; i < b->n; i++)
        sqlite3_bind_text(cur->s, (int)i + 1, b->v[i], -1, SQLITE_TRANSIENT);
    for (unsigned i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    free(b);
    buf_release(&sql);
    *out = cur;
    return 0;
fail:
    if (b) {
        for (unsigned i = 0; i < b->n_owned; i++)
            free(b->owned[i]);
        free(b);
    }
    buf_release(&sql);
    index_cursor_close(cur);
    return r;
}

static const char *ctext(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

int index_cursor_next(struct index_cursor *cur, struct index_row *row)
{
    int rc = sqlite3_step(cur->s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW) {
        log_debug("index: qido step: %s", sqlite3_errmsg(cur->c->db));
        return -EIO;
    }
    sqlite3_stmt *s = cur->s;
    memset(row, 0, sizeof(*row));
    int k = 0;
    row->study_uid = ctext(s, k++);
    row->study_date = ctext(s, k++);
    row->study_time = ctext(s, k++);
    row->accession = ctext(s, k++);
    row->referring = ctext(s, k++);
    row->patient_name = ctext(s, k++);
    row->patient_id = ctext(s, k++);
    row->patient_birth_date = ctext(s, k++);
    row->patient_sex = ctext(s, k++);
    row->study_id = ctext(s, k++);
    row->study_description = ctext(s, k++);
    row->modalities = ctext(s, k++);
    row->charset = ctext(s, k++);
    row->timezone = ctext(s, k++);
    row->n_study_series = sqlite3_column_int64(s, k++);
    row->n_study_instances = sqlite3_column_int64(s, k++);
    row->study_json = sqlite3_column_blob(s, k);
    row->study_json_len = (size_t)sqlite3_column_bytes(s, k++);
    if (cur->level >= INDEX_SERIES) {
        row->series_uid = ctext(s, k++);
        row->modality = ctext(s, k++);
        row->series_description = ctext(s, k++);
        row->pps_start_date = ctext(s, k++);
        row->pps_start_time = ctext(s, k++);
        row->has_series_number = sqlite3_column_type(s, k) != SQLITE_NULL;
        row->series_number = sqlite3_column_int64(s, k++);
        row->n_series_instances = sqlite3_column_int64(s, k++);
        row->series_json = sqlite3_column_blob(s, k);
        row->series_json_len = (size_t)sqlite3_column_bytes(s, k++);
    }
    if (cur->level >= INDEX_INSTANCE) {
        row->sop_uid = ctext(s, k++);
        row->sop_class_uid = ctext(s, k++);
        row->has_instance_number = sqlite3_column_type(s, k) != SQLITE_NULL;
        row->instance_number = sqlite3_column_int64(s, k++);
        row->n_frames = sqlite3_column_int64(s, k++);
        row->rows = sqlite3_column_int64(s, k++);
        row->cols = sqlite3_column_int64(s, k++);
        row->bits_alloc = sqlite3_column_int64(s, k++);
        row->ts_uid = ctext(s, k++);
        row->meta = sqlite3_column_blob(s, k);
        row->meta_len = (size_t)sqlite3_column_bytes(s, k++);
    }
    return 1;
}

void index_cursor_close(struct index_cursor *cur)
{
    if (!cur)
        return;
    if (cur->s && cur->c) {
        /* back to the connection's cache, replacing the oldest entry */
        sqlite3_reset(cur->s);
        sqlite3_clear_bindings(cur->s);
        struct conn *c = cur->c;
        unsigned k = c->qcache_next++ % QCACHE_N;
        sqlite3_finalize(c->qcache[k]);
        c->qcache[k] = cur->s;
    } else {
        sqlite3_finalize(cur->s);
    }
    if (cur->c)
        release(cur->ix, cur->c);
    free(cur);
}

/* ---- delete ---- */

static int exec_bound(struct conn *c, const char *sql, const struct index_scope *sc)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    scope_bind(s, sc);
    int r = step_done(c, s);
    sqlite3_finalize(s);
    return r;
}

static int drain_journal(struct conn *c, int (*unlink_fn)(void *ctx, const char *rel), void *ctx)
{
    sqlite3_stmt *s = NULL, *d = NULL;
    int r = 0;
    if (sqlite3_prepare_v2(c->db, "SELECT rel_path FROM pending_unlink", -1, &s, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "DELETE FROM pending_unlink WHERE rel_path = ?1", -1, &d,
                           NULL) != SQLITE_OK) {
        r = -EIO;
        goto out;
    }
    /* collect first: deleting while stepping the same table is undefined */
    struct buf paths;
    buf_init(&paths, 0);
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *p = ctext(s, 0);
        if (p && buf_append(&paths, p, strlen(p) + 1) == 0)
            n++;
    }
    const char *p = paths.data;
    for (size_t i = 0; i < n && r == 0; i++) {
        int ur = unlink_fn(ctx, p);
        if (ur == 0 || ur == -ENOENT || ur == -EINVAL) {
            sqlite3_reset(d);
            sqlite3_bind_text(d, 1, p, -1, SQLITE_TRANSIENT);
            r = step_done(c, d);
        }
        p += strlen(p) + 1;
    }
    buf_release(&paths);
out:
    sqlite3_finalize(s);
    sqlite3_finalize(d);
    return r;
}

int index_delete(struct index *ix, const struct index_scope *sc,
                 int (*unlink_fn)(void *ctx, const char *rel), void *ctx, uint64_t *n_removed)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    struct buf sql;
    buf_init(&sql, 0);
    sqlite3_stmt *s = NULL;
    struct touched series_t = {0}, study_t = {0};
    int r = conn_exec(c, "BEGIN IMMEDIATE");
    if (r < 0)
        goto out;
    /* the instances in scope, and their series / studies to recount */
    r = buf_puts(&sql, "SELECT i.pk, i.series_fk, i.study_fk FROM instance i "
                       "JOIN series se ON se.pk = i.series_fk JOIN study s ON s.pk = i.study_fk");
    r |= scope_where(sc, &sql);
    if (r < 0 || sqlite3_prepare_v2(c->db, sql.data, -1, &s, NULL) != SQLITE_OK) {
        r = -EIO;
        goto rollback;
    }
    scope_bind(s, sc);
    uint64_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        n++;
        if ((r = touch(&series_t, sqlite3_column_int64(s, 1))) < 0 ||
            (r = touch(&study_t, sqlite3_column_int64(s, 2))) < 0)
            goto rollback;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (n == 0) {
        r = -ENOENT;
        goto rollback;
    }
    buf_reset(&sql);
    r = buf_puts(&sql, "INSERT OR IGNORE INTO pending_unlink(rel_path) SELECT i.rel_path "
                       "FROM instance i JOIN series se ON se.pk = i.series_fk "
                       "JOIN study s ON s.pk = i.study_fk");
    r |= scope_where(sc, &sql);
    if (r < 0 || (r = exec_bound(c, sql.data, sc)) < 0)
        goto rollback;
    buf_reset(&sql);
    r = buf_puts(&sql, "DELETE FROM instance WHERE pk IN (SELECT i.pk FROM instance i "
                       "JOIN series se ON se.pk = i.series_fk JOIN study s ON s.pk = i.study_fk");
    r |= scope_where(sc, &sql);
    r |= buf_putc(&sql, ')');
    if (r < 0 || (r = exec_bound(c, sql.data, sc)) < 0)
        goto rollback;
    /* empty series and studies go; the others are recounted */
    if ((r = conn_exec(c, "DELETE FROM series WHERE NOT EXISTS "
                          "(SELECT 1 FROM instance WHERE series_fk = series.pk)")) < 0 ||
        (r = conn_exec(c, "DELETE FROM study WHERE NOT EXISTS "
                          "(SELECT 1 FROM series WHERE study_fk = study.pk)")) < 0 ||
        (r = conn_exec(c, "DELETE FROM patient WHERE NOT EXISTS "
                          "(SELECT 1 FROM study WHERE patient_fk = patient.pk)")) < 0 ||
        (r = recount(c, &series_t, &study_t)) < 0 || (r = conn_exec(c, "COMMIT")) < 0)
        goto rollback;
    *n_removed = n;
    atomic_fetch_add(&ix->write_gen, 1);
    /* rows are gone and the journal is durable: now the files */
    r = drain_journal(c, unlink_fn, ctx);
    goto out;
rollback:
    (void)conn_exec(c, "ROLLBACK");
out:
    sqlite3_finalize(s);
    buf_release(&sql);
    free(series_t.v);
    free(study_t.v);
    atomic_fetch_add(&ix->write_gen, 1);
    release(ix, c);
    return r;
}

int index_recover(struct index *ix, int (*unlink_fn)(void *ctx, const char *rel), void *ctx)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    int r = drain_journal(c, unlink_fn, ctx);
    release(ix, c);
    return r;
}

int index_clear(struct index *ix)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    int r = conn_exec(c, "BEGIN IMMEDIATE; DELETE FROM instance_data; DELETE FROM instance; "
                         "DELETE FROM series; DELETE FROM pn_key; DELETE FROM study; "
                         "DELETE FROM patient; COMMIT");
    if (r < 0)
        (void)conn_exec(c, "ROLLBACK");
    atomic_fetch_add(&ix->write_gen, 1);
    release(ix, c);
    return r;
}

int index_totals(struct index *ix, uint64_t *studies, uint64_t *series, uint64_t *instances)
{
    struct conn *c = acquire(ix);
    if (!c)
        return -EIO;
    sqlite3_stmt *s = NULL;
    int r = -EIO;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT (SELECT count(*) FROM study), (SELECT count(*) FROM series), "
                           "(SELECT count(*) FROM instance)",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        *studies = (uint64_t)sqlite3_column_int64(s, 0);
        *series = (uint64_t)sqlite3_column_int64(s, 1);
        *instances = (uint64_t)sqlite3_column_int64(s, 2);
        r = 0;
    }
    sqlite3_finalize(s);
    release(ix, c);
    return r;
}
