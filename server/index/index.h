/*
 * index.h - the searchable index of stored instances (SQLite, WAL).
 *
 * Sole user of <sqlite3.h>. Tables patient / study / series / instance hold
 * every attribute QIDO matches on or returns by default, the counts it must
 * return, each instance's compressed DICOM JSON (metablob.h) and layout
 * (layout.h), and each study's and series' level JSON for includefield.
 * Everything is derived from the stored files (store.h), so reindex can
 * rebuild it. Connections come from an internal pool (one per concurrent
 * caller); writes are short BEGIN IMMEDIATE transactions.
 *
 * Must not: build SQL from request text (every value is a bound parameter;
 * only column names from static tables are spliced), log above debug.
 */
#ifndef YY_INDEX_H
#define YY_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena;
struct inst;

struct index;

/* Opens or creates the index database at path. Returns 0 or -EIO (err set). */
int index_open(const char *path, struct index **out, char *err, size_t err_cap);
void index_close(struct index *ix);

/* ---- ingest ---- */

struct index_put {
    const struct inst *in;  /* borrowed */
    const char *rel_path;   /* store path */
    uint64_t size;          /* file bytes */
    int64_t mtime_ms;       /* creation time to record (ms since epoch) */
    const void *meta;       /* in's JSON as metablob_encode() made it (borrowed): */
    size_t meta_len;        /*   encoded by the caller, outside the transaction */
    bool durable;           /* the commit must be durable when it returns */
};

/* Inserts (or replaces, same SOP Instance UID) n instances in one
 * transaction, updating patients, studies, series and their counts. Each
 * item has its own savepoint: results[i] is 0, or -EEXIST (its series UID
 * belongs to another study), -ENOSPC, -EIO. The return value is 0 when the
 * transaction committed (whatever the items), else the commit error (then
 * every result is that error).
 *
 * Unless an item is durable, the commit does not sync the write-ahead log
 * (synchronous=NORMAL): it is visible at once and survives a crash of the
 * process, but an OS crash or power loss may take it (never a part of it).
 * The caller makes each file durable before indexing it, so such a loss
 * takes rows, never objects: recover.h indexes them again at the next start.
 * Every other write (deletes) syncs, and so makes every earlier commit
 * durable.
 *
 * before_commit (may be NULL) is called once every row is written, before
 * the commit, so that the caller can finish making the files durable while
 * the rows were being written: a non-zero return rolls the transaction
 * back (every result is then that value), and no row was ever visible. */
int index_put_many(struct index *ix, const struct index_put *items, size_t n, int *results,
                   int (*before_commit)(void *ctx), void *ctx);

/* For recovery (recover.h): *newest_ms receives the creation time of the
 * newest instance row (0 when there is none); then fn(ctx, rel_path) is
 * called for the rows from the newest back while their creation time is at
 * least *newest_ms - window_ms. Stops when fn returns non-zero (returned). */
int index_recent_paths(struct index *ix, int64_t window_ms, int64_t *newest_ms,
                       int (*fn)(void *ctx, const char *rel), void *ctx);

/* What is stored for a SOP Instance UID. Strings in arena a. */
struct index_instance {
    int64_t pk;
    const char *study_uid, *series_uid, *sop_uid, *sop_class_uid, *ts_uid, *rel_path;
    uint64_t size;
    uint32_t n_frames;
    int64_t created_ms;
    const void *layout; /* blob in a (only when asked for) */
    size_t layout_len;
    const void *meta;   /* metablob (index_iter_next only, when asked for) */
    size_t meta_len;
};

/* Looks up one instance; -ENOENT when absent. with_layout also loads its
 * layout (layout.h). */
int index_get_instance(struct index *ix, const char *sop_uid, bool with_layout, struct arena *a,
                       struct index_instance *out);

/* The StudyInstanceUID of the study that holds series_uid: 0, -ENOENT when
 * no study does, -EIO. UIDs are at most 64 characters. */
#define INDEX_UID_MAX 65
int index_series_study(struct index *ix, const char *series_uid, char study_uid[INDEX_UID_MAX]);

/* A counter this process bumps after each write transaction (put, delete,
 * clear): what was read at one value is current while it stays the same
 * (for caches of lookups; writes by other processes are not counted). */
uint64_t index_write_gen(struct index *ix);

/* ---- retrieval scopes ---- */

/* Iterates the instances of a study / series / one instance, ordered by
 * series then instance number. Any of the UIDs may be NULL (wider scope)
 * but study_uid must be given when series_uid is, and series_uid when
 * sop_uid is; a UID that does not belong to its parent matches nothing. */
struct index_scope {
    const char *study_uid;
    const char *series_uid;
    const char *sop_uid;
};

struct index_iter;
/* Opens an iterator. with_meta loads metablobs, with_layout layouts. */
int index_iter_open(struct index *ix, const struct index_scope *sc, bool with_meta,
                    bool with_layout, struct index_iter **out);
/* 1 with *row filled (pointers valid until the next call), 0 at end, <0. */
int index_iter_next(struct index_iter *it, struct index_instance *row);
void index_iter_close(struct index_iter *it);

/* Count and newest change time (ms) of the scope, for ETag/Last-Modified;
 * -ENOENT when the scope is empty. */
int index_scope_stat(struct index *ix, const struct index_scope *sc, uint64_t *count,
                     int64_t *max_ms, int64_t *sum_pk);

/* ---- QIDO ---- */

enum index_level { INDEX_STUDY = 0, INDEX_SERIES = 1, INDEX_INSTANCE = 2 };

enum index_match_kind {
    MATCH_SINGLE,   /* exact value */
    MATCH_WILDCARD, /* value holds '*' or '?' */
    MATCH_LIST,     /* list of UIDs */
    MATCH_RANGE,    /* lo and/or hi (date / time) */
    MATCH_FUZZY,    /* fuzzy person name */
    MATCH_EMPTY,    /* "" never constrains: kept for completeness */
};

#define INDEX_MAX_LIST 1024

struct index_match {
    uint32_t tag;
    enum index_match_kind kind;
    const char *value;    /* SINGLE, WILDCARD, FUZZY (already normalised for PN) */
    const char *lo, *hi;  /* RANGE; either may be NULL (open range) */
    const char **list;    /* LIST */
    unsigned n_list;
};

#define INDEX_MAX_MATCH 64
#define INDEX_MAX_ORDER 8

struct index_order {
    uint32_t tag;
    bool desc;
};

struct index_query {
    enum index_level level;
    const char *study_uid;  /* from the path, or NULL */
    const char *series_uid; /* from the path, or NULL */
    unsigned n_match;
    struct index_match match[INDEX_MAX_MATCH];
    unsigned n_order;
    struct index_order order[INDEX_MAX_ORDER];
    unsigned limit;  /* rows to return */
    unsigned offset;
};

/* True when tag can be matched at level (or at a parent level that the
 * query joins); *pn set for person-name columns. */
bool index_can_match(enum index_level level, uint32_t tag, bool *pn);
/* True when tag can be used in orderby at level. */
bool index_can_order(enum index_level level, uint32_t tag);

/* One result row. Text is UTF-8, NULL when absent. Valid until the next
 * index_cursor_next(). */
struct index_row {
    /* study (always) */
    const char *study_uid, *study_date, *study_time, *accession, *referring, *patient_name,
        *patient_id, *patient_birth_date, *patient_sex, *study_id, *study_description,
        *modalities, *charset, *timezone;
    int64_t n_study_series, n_study_instances;
    const void *study_json;
    size_t study_json_len;
    /* series (series and instance levels) */
    const char *series_uid, *modality, *series_description, *pps_start_date, *pps_start_time;
    bool has_series_number;
    int64_t series_number, n_series_instances;
    const void *series_json;
    size_t series_json_len;
    /* instance (instance level) */
    const char *sop_uid, *sop_class_uid, *ts_uid;
    bool has_instance_number;
    int64_t instance_number, n_frames, rows, cols, bits_alloc;
    const void *meta; /* metablob */
    size_t meta_len;
};

struct index_cursor;
/* Runs the query. Returns 0, -EINVAL (err names the problem), -EIO. */
int index_query_open(struct index *ix, const struct index_query *q, struct index_cursor **out,
                     char *err, size_t err_cap);
int index_cursor_next(struct index_cursor *c, struct index_row *row);
void index_cursor_close(struct index_cursor *c);

/* ---- delete ---- */

/* Removes the scope's rows in one transaction and records their files in a
 * pending-unlink journal (same transaction); then unlinks the files through
 * unlink_fn and clears the journal. Crash-safe: index_recover() finishes
 * the journal. *n_removed counts instances. -ENOENT if nothing matched. */
int index_delete(struct index *ix, const struct index_scope *sc,
                 int (*unlink_fn)(void *ctx, const char *rel), void *ctx, uint64_t *n_removed);

/* Finishes interrupted deletes (pending-unlink journal). */
int index_recover(struct index *ix, int (*unlink_fn)(void *ctx, const char *rel), void *ctx);

/* Removes every row (reindex). */
int index_clear(struct index *ix);

/* Totals for the status page and tests. */
int index_totals(struct index *ix, uint64_t *studies, uint64_t *series, uint64_t *instances);

#endif
