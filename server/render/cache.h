/*
 * cache.h - a size-bounded LRU cache of rendered images, so repeat views
 * (thumbnails, the same slice at the same window) cost no decode. A second
 * instance keeps assembled WADO-RS metadata responses (keyed by their
 * ETag, which changes with the content).
 *
 * Owns its entries (copies of the bytes). Thread-safe (one mutex for the
 * table; an entry found is lent out, counted, so that it is copied or sent
 * outside the lock and outlives an eviction). A byte budget of 0 disables
 * it.
 */
#ifndef YY_RENDER_CACHE_H
#define YY_RENDER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct render_cache;

struct render_cache *render_cache_new(uint64_t max_bytes);
void render_cache_free(struct render_cache *c);

/* Copies the entry for key into out (and its media type into type[32]).
 * Returns true on a hit (false also when out cannot hold it). */
bool render_cache_get(struct render_cache *c, const char *key, struct buf *out, char type[32]);

/* Lends the entry for key without copying: the bytes stay valid (even
 * if the entry is evicted meanwhile) until render_cache_return(token).
 * Returns the token, or NULL on a miss. For large entries sent as they
 * are (a 6 MB metadata answer copied into a new buffer cost more in page
 * faults than sending it). */
void *render_cache_borrow(struct render_cache *c, const char *key, const void **data,
                          size_t *len, char type[32]);
void render_cache_return(void *token);

/* Stores a copy (replacing an entry of the same key); evicts the least
 * recently used entries to stay within the budget. Entries larger than a
 * quarter of the budget are not kept. */
void render_cache_put(struct render_cache *c, const char *key, const void *data, size_t len,
                      const char *type);
/* The largest entry render_cache_put keeps (0 when c is NULL or off). */
size_t render_cache_max_entry(const struct render_cache *c);

/* Drops every entry whose key starts with prefix (an instance deleted). */
void render_cache_drop_prefix(struct render_cache *c, const char *prefix);

/* Statistics for tests and the status page. */
void render_cache_stats(struct render_cache *c, uint64_t *bytes, uint64_t *entries,
                        uint64_t *hits, uint64_t *misses);

#endif
