/*
 * meta_disk.h - assembled series/study metadata kept on disk, gzip'd once.
 *
 * A series' metadata is assembled from one index row per instance; for a
 * large series that is milliseconds of work and, after a restart or a
 * page-cache eviction, hundreds of small reads. The first complete answer
 * is therefore recompressed as ONE gzip stream (about a tenth of the
 * per-instance-deflated answer) and written to
 * <data>/cache/metadata/<study hash>-<series hash | "study">.gz in the
 * background; later gzip requests whose ETag matches are sent from that
 * file with sendfile.
 *
 * One file per study or series: a change to it changes its ETag (which
 * also covers the base URL written into BulkDataURIs), the stale file no
 * longer matches and is replaced by the next answer; a DELETE removes the
 * files at once (they hold patient data). The files are derived data:
 * deleting the folder is always safe. Their total size is bounded (oldest
 * written removed first).
 */
#ifndef YY_META_DISK_H
#define YY_META_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct meta_disk;
struct render_cache;

/* Opens (creates) <data_dir>/cache/metadata. max_bytes bounds the files'
 * total size; 0 turns the cache off (*out = NULL, returns 0). */
int meta_disk_open(const char *data_dir, uint64_t max_bytes, struct meta_disk **out);
/* Waits for a write in progress, then frees. NULL is fine. */
void meta_disk_close(struct meta_disk *d);

/* The gzip body stored for the study (series_uid NULL) or series when it
 * was written for etag_hex: 1 with *fd (caller closes), *off, *len; 0 when
 * absent or stale. */
int meta_disk_get(struct meta_disk *d, const char *study_uid, const char *series_uid,
                  const char *etag_hex, int *fd, uint64_t *off, uint64_t *len);

/* Takes body (malloc'ed; the complete answer, gzip when is_gzip, else the
 * JSON itself) and writes it recompressed in the background, unless a
 * write is already running (then body is freed: a later answer writes it).
 * When mem is given, the recompressed body also replaces mem's entry
 * etag_hex. */
void meta_disk_put(struct meta_disk *d, const char *study_uid, const char *series_uid,
                   const char *etag_hex, void *body, size_t len, bool is_gzip,
                   struct render_cache *mem);

/* Removes every kept file (reindex: the index they were made from is
 * replaced). */
void meta_disk_purge(const char *data_dir);

/* Removes the files of a study (series_uid NULL: and of all its series) or
 * of a series and its study, after a DELETE; a write in progress is
 * dropped. */
void meta_disk_forget(struct meta_disk *d, const char *study_uid, const char *series_uid);

#endif
