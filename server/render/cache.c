/* cache.c - see cache.h. A hash table with chaining plus a doubly linked
 * LRU list. */
#include "core/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render/cache.h"
#include "core/banned.h"

#define BUCKETS 4096

struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU: head = most recent */
    char *key;
    char type[32];
    size_t len;
    uint8_t *data;
    atomic_uint refs;          /* 1 while in the cache, +1 per borrower */
};

struct render_cache {
    pthread_mutex_t lock;
    uint64_t max_bytes, bytes, entries, hits, misses;
    struct entry *buckets[BUCKETS];
    struct entry *head, *tail;
};

static unsigned hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % BUCKETS;
}

struct render_cache *render_cache_new(uint64_t max_bytes)
{
    struct render_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void unlink_lru(struct render_cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct render_cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void entry_unref(struct entry *e)
{
    if (atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    free(e->key);
    free(e->data);
    free(e);
}

static void remove_entry(struct render_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[hash(e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    unlink_lru(c, e);
    c->bytes -= e->len + strlen(e->key);
    c->entries--;
    entry_unref(e);
}

void render_cache_free(struct render_cache *c)
{
    if (!c)
        return;
    while (c->head)
        remove_entry(c, c->head);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct entry *find(struct render_cache *c, const char *key)
{
    for (struct entry *e = c->buckets[hash(key)]; e; e = e->hnext)
        if (!strcmp(e->key, key))
            return e;
    return NULL;
}

bool render_cache_get(struct render_cache *c, const char *key, struct buf *out, char type[32])
{
    const void *data;
    size_t len;
    void *tok = render_cache_borrow(c, key, &data, &len, type);
    if (!tok)
        return false;
    bool ok = buf_append(out, data, len) == 0;
    render_cache_return(tok);
    return ok;
}

void *render_cache_borrow(struct render_cache *c, const char *key, const void **data,
                          size_t *len, char type[32])
{
    if (!c || !c->max_bytes)
        return NULL;
    pthread_mutex_lock(&c->lock);
    struct entry *e = find(c, key);
    if (e) {
        atomic_fetch_add(&e->refs, 1);
        *data = e->data;
        *len = e->len;
        snprintf(type, 32, "%s", e->type);
        unlink_lru(c, e);
        push_front(c, e);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

void render_cache_return(void *token)
{
    if (token)
        entry_unref(token);
}

size_t render_cache_max_entry(const struct render_cache *c)
{
    return c ? (size_t)(c->max_bytes / 4) : 0;
}

void render_cache_put(struct render_cache *c, const char *key, const void *data, size_t len,
                      const char *type)
{
    if (len + strlen(key) > render_cache_max_entry(c))
        return;
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->key = strdup(key);
    e->data = malloc(len ? len : 1);
    if (!e->key || !e->data) {
        free(e->key);
        free(e->data);
        free(e);
        return;
    }
    memcpy(e->data, data, len);
    e->len = len;
    atomic_init(&e->refs, 1);
    snprintf(e->type, sizeof(e->type), "%s", type);
    pthread_mutex_lock(&c->lock);
    struct entry *old = find(c, key);
    if (old)
        remove_entry(c, old);
    unsigned h = hash(key);
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    push_front(c, e);
    c->bytes += len + strlen(key);
    c->entries++;
    while (c->bytes > c->max_bytes && c->tail)
        remove_entry(c, c->tail);
    pthread_mutex_unlock(&c->lock);
}

void render_cache_drop_prefix(struct render_cache *c, const char *prefix)
{
    if (!c)
        return;
    size_t n = strlen(prefix);
    pthread_mutex_lock(&c->lock);
    for (struct entry *e = c->head; e;) {
        struct entry *next = e->next;
        if (!strncmp(e->key, prefix, n))
            remove_entry(c, e);
        e = next;
    }
    pthread_mutex_unlock(&c->lock);
}

void render_cache_stats(struct render_cache *c, uint64_t *bytes, uint64_t *entries,
                        uint64_t *hits, uint64_t *misses)
{
    if (!c) {
        *bytes = *entries = *hits = *misses = 0;
        return;
    }
    pthread_mutex_lock(&c->lock);
    *bytes = c->bytes;
    *entries = c->entries;
    *hits = c->hits;
    *misses = c->misses;
    pthread_mutex_unlock(&c->lock);
}
