/*
 * ingest.h - the one path by which an object enters the archive (STOW-RS,
 * `yingyun import`, reindex): parse the received bytes, validate identity,
 * resolve duplicates, make the file durable, index it.
 *
 * Order (durability, PS3.18 10.5 "stored" means retrievable):
 *   temp file -> parse + extract (no file visible yet) -> same-SOP lock ->
 *   duplicate check -> made durable under its name -> index commit
 *   (group-committed with concurrent ingests) -> unlock -> result.
 * With ack_when_durable a new object made durable with one flush skips
 * the wait for its commit: its series is checked against other studies
 * before it is made durable, the result is given once it is durable, and
 * a committer thread commits its row and then unlocks its SOP Instance
 * UID; ingest_wait_visible() is what every read waits on.
 * A crash before the link leaves only a temp file (removed at start); a
 * crash after it leaves a file that recovery (recover.h) picks up. An
 * index row never exists without its file.
 */
#ifndef YY_INGEST_H
#define YY_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct index;

/* PS3.4 C.4.2.1.4 / PS3.18 10.5.3 failure reasons */
#define FAIL_OUT_OF_RESOURCES 0xA700
#define FAIL_DATASET_MISMATCH 0xA900
#define FAIL_CANNOT_UNDERSTAND 0xC000
#define FAIL_PROCESSING 0x0110
#define FAIL_DUPLICATE 0x0111
#define FAIL_STUDY_MISMATCH 0xA901

enum ingest_outcome { INGEST_STORED, INGEST_DUPLICATE, INGEST_FAILED };

struct ingest_result {
    enum ingest_outcome outcome;
    uint16_t failure_reason;    /* when FAILED */
    char reason[320];           /* human-readable, never contains patient data */
    char sop_class_uid[68];     /* may be "" when unknown */
    char sop_uid[68];
    char study_uid[68];
    char series_uid[68];
};

struct ingest_opts {
    bool overwrite;             /* replace a stored object with different bytes */
    /* answer a new object as soon as it is durable; a committer thread
     * writes its index row right after, and ingest_wait_visible() lets
     * every later read see it (see below) */
    bool ack_when_durable;
    /* ... and the committer gathers their rows this long (ms), unless 32
     * wait or a read waits for them */
    unsigned gather_ms;
};

struct ingest;

int ingest_new(struct store *s, struct index *ix, const struct ingest_opts *o,
               struct ingest **out);
void ingest_free(struct ingest *g);

/* Ingests the object in t. t is always consumed (committed or discarded).
 * expected_study: when non-NULL, an object of another study fails (STOW-RS
 * to /studies/{uid}). Returns 0 with *res filled for stored, duplicate and
 * refused objects; a negative errno only when the archive itself failed
 * (res->outcome is FAILED then too, with reason). -ENOSPC means disk full. */
int ingest_tmp(struct ingest *g, struct store_tmp *t, const char *expected_study,
               struct ingest_result *res);

/* A set of ingests running in the background for one request: a STOW-RS
 * with many parts goes on receiving the next part while earlier ones are
 * made durable, and their fsyncs and index commits overlap (and group).
 * The ingests run on the ingest's worker threads (started on demand, at
 * most 16, kept until ingest_free); the results belong to the caller. */
struct ingest_batch;

int ingest_batch_new(struct ingest *g, unsigned max_running, struct ingest_batch **out);
/* Starts ingesting t (consumed, as ingest_tmp) into *res; res and
 * expected_study must stay valid until ingest_batch_wait. Blocks while
 * max_running of this batch are running. If no worker can be started,
 * ingests here. */
void ingest_batch_add(struct ingest_batch *b, struct store_tmp *t, const char *expected_study,
                      struct ingest_result *res);
/* Waits for every ingest started. */
void ingest_batch_wait(struct ingest_batch *b);
/* Waits, then frees. */
void ingest_batch_free(struct ingest_batch *b);

/* With ack_when_durable: waits until every object answered before this
 * call has its index row committed (or given up, which is logged). Every
 * request that reads or changes the index calls it first, so a client that
 * got the answer to a STOW finds the object with any request it makes
 * after; costs one atomic read when no row is waiting. */
void ingest_wait_visible(struct ingest *g);

/* Indexes an object that is already in the store (reindex). */
int ingest_existing(struct ingest *g, const char *rel, struct ingest_result *res);
/* The same for an object the index may have lost (recover.h): indexed only
 * when the index has no row for its SOP Instance UID or its row's file is
 * gone; else res->outcome is INGEST_DUPLICATE and nothing changes. */
int ingest_recover(struct ingest *g, const char *rel, struct ingest_result *res);

#endif
