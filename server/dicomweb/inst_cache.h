/*
 * inst_cache.h - recent instance lookups (index row + layout) for WADO-RS,
 * so that serving a frame does not run an SQL query each time.
 *
 * An entry is current while (1) the index's write generation is the one it
 * was read at (index_write_gen(): this process has not written since) and
 * (2) the object file the caller opens is the file the entry was made with
 * (same device and inode): objects are never changed in place, so a file
 * replaced or removed by another process (yingyun import with overwrite)
 * shows up as a different inode or a missing file, and the caller then asks
 * the index again (inst_cache_drop()).
 * Fixed number of slots (direct-mapped by a hash of the SOP Instance UID),
 * striped locks; entries with a big layout are not kept.
 * Must not: know SQL or HTTP.
 */
#ifndef YY_INST_CACHE_H
#define YY_INST_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "index/index.h"

struct inst_cache;

/* NULL on OOM (callers then go to the index every time). */
struct inst_cache *inst_cache_new(void);
void inst_cache_free(struct inst_cache *c);

/* The file an entry was made with. */
struct inst_file_id {
    uint64_t dev, ino;
};

/* Copies a current entry for sop_uid made at generation gen into out (its
 * strings and layout in a) and its file identity into id. Returns true on a
 * hit. */
bool inst_cache_get(struct inst_cache *c, const char *sop_uid, uint64_t gen, struct arena *a,
                    struct index_instance *out, struct inst_file_id *id);

/* Keeps a copy of row (read from the index at generation gen, with its
 * layout) and the identity of its opened file. Best effort (no error). */
void inst_cache_put(struct inst_cache *c, uint64_t gen, const struct index_instance *row,
                    const struct inst_file_id *id);

/* Forgets sop_uid (its file turned out to be another one, or missing). */
void inst_cache_drop(struct inst_cache *c, const char *sop_uid);

#endif
