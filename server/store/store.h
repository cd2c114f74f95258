/*
 * store.h - the blob store: one file per SOP instance, the source of truth.
 *
 * Layout under the data directory:
 *   objects/<day>/<40 hex>.dcm   a stored instance: <day> is the UTC date it
 *                                was stored (YYYYMMDD), the name the first 160
 *                                bits of SHA-256(SOP Instance UID), so no path
 *                                is ever built from request text
 *   objects/<day>r/<40 hex>.dcm  a replacement stored the same day as the object
 *                                it replaces (which stays until the new one is
 *                                indexed)
 *   objects/ab/cd/<40 hex>.dcm   the same in stores written before 0.2 (still
 *                                read, walked and replaced)
 *   tmp/                         incoming bytes where the file system has no
 *                                unnamed files (O_TMPFILE): tmp/<random>.part
 *                                (emptied at every open)
 *   damaged/<day>-<40 hex>.dcm   objects set aside by store_set_aside()
 *
 * Incoming bytes go to an unnamed file (O_TMPFILE) in today's folder: it
 * needs no entry anywhere (nothing to create, remove or sync) and vanishes
 * with its descriptor, even when the process is killed.
 *
 * Durability, two flushes (any file system): store_commit() fdatasync()s
 * the file, links (or renames) it into place and fsync()s the folder, so a
 * committed object survives a crash and a half-written one is never
 * visible under objects/. Objects stored at the same time share their
 * folder, so concurrent commits can share its fsync (store_commit_start
 * + store_sync_dir).
 *
 * One flush (store_set_one_flush; ext4 and XFS, where one fsync of a file
 * just linked makes its entry durable too): the CRC-32 of the bytes goes
 * into the file's inode (xattr user.yingyun.crc32), the file is linked into
 * place, then one fsync makes bytes, inode and entry durable. A crash
 * before that fsync ends may leave the entry with blocks that never reached
 * the disk; such an object was never acknowledged, and
 * store_check_crc() finds it by its CRC (recovery sets it aside).
 *
 * With direct I/O on,
 * temp files are written with O_DIRECT (whole blocks from an aligned
 * buffer, the last partial block through the page cache): the same
 * sync makes them durable.
 * Must not: know SQL or HTTP; log above debug.
 */
#ifndef YY_STORE_H
#define YY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_REL_MAX 64 /* "objects/YYYYMMDD/<40>.dcm" + NUL fits */

struct store;

/* An incoming object being written. Owned by the caller; release with
 * store_tmp_discard() unless store_commit() consumed it (the staging buffer
 * is freed by store_tmp_discard() in both cases). Moved by value: the
 * source is then reset with store_tmp_init(). */
struct store_tmp {
    int fd;
    uint64_t size;
    /* direct I/O (store_set_direct): bytes gather in an aligned staging
     * buffer and go to the file in whole blocks (O_DIRECT: no page-cache
     * copy); an object that fits stays in it, to be parsed from memory */
    bool direct, spilled, finished;
    bool anon;                  /* unnamed (O_TMPFILE): path is /proc/self/fd/<fd> */
    uint32_t crc;               /* CRC-32 of the bytes written */
    char day[STORE_REL_MAX];    /* unnamed: the folder it was made in */
    unsigned char *stage;       /* from the store's pool of mapped buffers */
    size_t stage_len, stage_cap;
    struct store *owner;
    char path[4096];
};

/* Opens (creating if needed) the store in data_dir and removes leftover temp
 * files. Returns 0, or a negative errno. Owned: store_close(). */
int store_open(const char *data_dir, struct store **out);
void store_close(struct store *s);

/* Writes new objects with O_DIRECT (default off; the server turns it on from
 * the configuration). Where the file system refuses it, writes fall back
 * to the page cache. */
void store_set_direct(struct store *s, bool on);

/* Makes temp files unnamed (O_TMPFILE, linked into place at commit; on by
 * default where /proc is mounted and the file system has them, else named
 * files in tmp/). */
void store_set_tmpfile(struct store *s, bool on);

/* Commits with one flush where the file system allows it (see above;
 * default on, where it works: checked here). Off: two flushes. */
void store_set_one_flush(struct store *s, bool on);
bool store_one_flush(struct store *s);
/* Whether folders are made durable with syncfs, not their own fsync (ext4
 * without a journal, found at store_open; see store.c's fsync_dir). */
bool store_syncs_fs(struct store *s);

/* An empty, never-created tmp (fd -1, no path, no buffer). */
void store_tmp_init(struct store_tmp *t);
/* Creates a new empty temp file. */
int store_tmp_create(struct store *s, struct store_tmp *t);
/* Appends len bytes. -ENOSPC when the disk is full (or the configured
 * free-space reserve would be crossed), -EIO otherwise. */
int store_tmp_write(struct store_tmp *t, const void *data, size_t len);
/* Ends the writing: the file then holds exactly the bytes written (not yet
 * durable: store_commit does that). Idempotent. */
int store_tmp_finish(struct store_tmp *t);
/* The whole object in memory after store_tmp_finish(), when it fit in the
 * staging buffer (borrowed until store_tmp_discard()); else NULL. */
const void *store_tmp_mem(const struct store_tmp *t, size_t *len);
/* Closes and unlinks; accepts a never-created or already-discarded tmp. */
void store_tmp_discard(struct store_tmp *t);

/* True when the file name of rel is the one of sop_uid. */
bool store_name_matches(const char *rel, const char *sop_uid);

/* Makes t durable under the path of sop_uid in today's directory,
 * replacing any file there. On success t is consumed (fd closed) and rel
 * receives the relative path. */
int store_commit(struct store *s, struct store_tmp *t, const char *sop_uid,
                 char rel[STORE_REL_MAX]);
/* store_commit in two steps, so that callers can share syncs or overlap
 * them with other work. store_commit_start puts the file into place
 * (rel receives its path) and says in *next what makes it durable:
 *   STORE_SYNC_FILE  (one flush) store_commit_finish(t), which consumes t
 *                    (on failure it removes the file; t stays the
 *                    caller's to discard);
 *   STORE_SYNC_DIR   (two flushes; t consumed, the file durable) a
 *                    store_sync_dir() of rel, or of another path in the
 *                    same folder called after this returned.
 * The object counts as stored (may be indexed) only once that succeeded.
 * keep (may be NULL) is the path of a stored object that must survive
 * until the caller removes it (the one being replaced): when today's path
 * is that one, the new file goes to the day's second folder,
 * objects/<day>r/, so nothing is renamed over it. */
enum store_sync { STORE_SYNC_FILE, STORE_SYNC_DIR };
int store_commit_start(struct store *s, struct store_tmp *t, const char *sop_uid,
                       const char *keep, char rel[STORE_REL_MAX], enum store_sync *next);
int store_commit_finish(struct store *s, struct store_tmp *t, const char *rel);
/* Makes the entries of rel's folder durable (rel relative to the data
 * folder: an object's path, or a name in the data folder itself). */
int store_sync_dir(struct store *s, const char *rel);


/* Opens a stored object read-only (O_CLOEXEC). */
int store_open_object(struct store *s, const char *rel, int *fd);
/* Removes a stored object (missing is success) and fsyncs its directory. */
int store_unlink(struct store *s, const char *rel);

/* Checks an open stored object (store_open_object) against the CRC-32
 * recorded when it was written with one flush, reading it whole: 0 when it
 * matches or there is none, -EBADMSG when it does not (torn by a crash
 * before it was acknowledged), else -errno. */
int store_check_crc(int fd);
/* Moves a stored object out of objects/ into damaged/ (out receives its
 * new relative path), durably; nothing is deleted. */
int store_set_aside(struct store *s, const char *rel, char out[STORE_REL_MAX]);

/* True when the files at t and rel have identical bytes. */
int store_same_content(struct store *s, struct store_tmp *t, const char *rel, bool *same);

/* Calls fn for every stored object (relative path); stops when fn returns
 * non-zero and returns that value. */
int store_walk(struct store *s, int (*fn)(void *ctx, const char *rel), void *ctx);
/* The same for the day folders of since_day (YYYYMMDD, UTC) and later only
 * (<day> and <day>r; not the folders of before 0.2). */
int store_walk_since(struct store *s, uint32_t since_day, int (*fn)(void *ctx, const char *rel),
                     void *ctx);

/* The data directory (borrowed). */
const char *store_dir(const struct store *s);

/* Bytes that must stay free on the filesystem: writes that would cross it
 * fail with -ENOSPC (0 = off). */
void store_set_reserve(struct store *s, uint64_t bytes);

#endif
