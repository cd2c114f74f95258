/*
 * recover.h - at start, indexes again the objects whose index rows an OS
 * crash or a power loss took.
 *
 * New instances are group-committed to the index without syncing its
 * write-ahead log (index_put_many); each file was made durable before its
 * row was written (ingest.h), so such a loss takes rows, never objects, and
 * only rows newer than the newest row that survived. recover_recent() walks
 * the store's day folders from two days before that row on (before today,
 * when the index is empty) and indexes every object the index does not know
 * (ingest_recover). When nothing was lost it costs one read of the recent
 * rows and of those folders' names.
 */
#ifndef YY_RECOVER_H
#define YY_RECOVER_H

struct store;
struct index;
struct ingest;

struct recover_stats {
    unsigned long files;    /* objects in the folders walked */
    unsigned long indexed;  /* indexed again */
    unsigned long failed;   /* could not be indexed (logged) */
};

/* Returns 0 or a negative errno (index or store unreadable). It also
 * indexes the objects named in <data>/unindexed (below) and removes that
 * file once none of them failed. */
int recover_recent(struct store *s, struct index *ix, struct ingest *g, struct recover_stats *st);

/* An object that was answered and is durable but whose index row could
 * not be written (ingest.h, ack_when_durable) is named in <data>/unindexed
 * (appended, synced), so that the next start indexes it however old its
 * folder is by then. Returns 0 or a negative errno. */
int recover_note_unindexed(struct store *s, const char *rel);

#endif
