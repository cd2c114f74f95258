/* inst_cache.c - see inst_cache.h. */
#include "core/common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dicomweb/inst_cache.h"
#include "core/banned.h"

#define SLOTS 4096              /* power of two */
#define STRIPES 64              /* locks; divides SLOTS */
#define MAX_LAYOUT (64 * 1024)  /* bigger layouts (many frames) are not kept */

struct entry {
    uint64_t gen;
    struct inst_file_id id;
    struct index_instance row; /* pointers into data */
    size_t len;
    _Alignas(16) char data[];
};

struct inst_cache {
    pthread_mutex_t lock[STRIPES];
    struct entry *slot[SLOTS];
};

static uint32_t slot_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32)) & (SLOTS - 1);
}

struct inst_cache *inst_cache_new(void)
{
    struct inst_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->lock[i], NULL);
    return c;
}

void inst_cache_free(struct inst_cache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < SLOTS; i++)
        free(c->slot[i]);
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->lock[i]);
    free(c);
}

/* p (inside from[]) moved to the same offset in to[]. */
static const char *rebase(const char *p, const char *from, char *to)
{
    return p ? to + (p - from) : NULL;
}

bool inst_cache_get(struct inst_cache *c, const char *sop_uid, uint64_t gen, struct arena *a,
                    struct index_instance *out, struct inst_file_id *id)
{
    if (!c)
        return false;
    uint32_t k = slot_of(sop_uid);
    pthread_mutex_t *m = &c->lock[k % STRIPES];
    bool hit = false;
    pthread_mutex_lock(m);
    struct entry *e = c->slot[k];
    if (e && e->gen == gen && strcmp(e->row.sop_uid, sop_uid) == 0) {
        char *copy = arena_alloc(a, e->len);
        if (copy) {
            memcpy(copy, e->data, e->len);
            *out = e->row;
            out->study_uid = rebase(e->row.study_uid, e->data, copy);
            out->series_uid = rebase(e->row.series_uid, e->data, copy);
            out->sop_uid = rebase(e->row.sop_uid, e->data, copy);
            out->sop_class_uid = rebase(e->row.sop_class_uid, e->data, copy);
            out->ts_uid = rebase(e->row.ts_uid, e->data, copy);
            out->rel_path = rebase(e->row.rel_path, e->data, copy);
            out->layout = rebase(e->row.layout, e->data, copy);
            out->meta = NULL;
            out->meta_len = 0;
            *id = e->id;
            hit = true;
        }
    }
    pthread_mutex_unlock(m);
    return hit;
}

/* Appends s (may be NULL) to e->data at *at; returns its copy. */
static const char *put_str(struct entry *e, size_t *at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(e->data + *at, s, n);
    *at += n;
    return e->data + *at - n;
}

void inst_cache_put(struct inst_cache *c, uint64_t gen, const struct index_instance *row,
                    const struct inst_file_id *id)
{
    if (!c || !row->sop_uid || row->layout_len > MAX_LAYOUT)
        return;
    const char *s[6] = {row->study_uid, row->series_uid, row->sop_uid,
                        row->sop_class_uid, row->ts_uid, row->rel_path};
    size_t len = (row->layout_len + 15) & ~(size_t)15; /* the layout first, aligned */
    for (unsigned i = 0; i < 6; i++)
        len += s[i] ? strlen(s[i]) + 1 : 0;
    struct entry *e = malloc(sizeof(*e) + len);
    if (!e)
        return;
    e->gen = gen;
    e->id = *id;
    e->row = *row;
    e->row.meta = NULL;
    e->row.meta_len = 0;
    e->len = len;
    size_t at = 0;
    if (row->layout_len) {
        memcpy(e->data, row->layout, row->layout_len);
        e->row.layout = e->data;
        at = (row->layout_len + 15) & ~(size_t)15;
    } else {
        e->row.layout = NULL;
    }
    e->row.study_uid = put_str(e, &at, s[0]);
    e->row.series_uid = put_str(e, &at, s[1]);
    e->row.sop_uid = put_str(e, &at, s[2]);
    e->row.sop_class_uid = put_str(e, &at, s[3]);
    e->row.ts_uid = put_str(e, &at, s[4]);
    e->row.rel_path = put_str(e, &at, s[5]);
    uint32_t k = slot_of(row->sop_uid);
    pthread_mutex_t *m = &c->lock[k % STRIPES];
    pthread_mutex_lock(m);
    struct entry *old = c->slot[k];
    c->slot[k] = e;
    pthread_mutex_unlock(m);
    free(old);
}

void inst_cache_drop(struct inst_cache *c, const char *sop_uid)
{
    if (!c)
        return;
    uint32_t k = slot_of(sop_uid);
    pthread_mutex_t *m = &c->lock[k % STRIPES];
    struct entry *old = NULL;
    pthread_mutex_lock(m);
    if (c->slot[k] && strcmp(c->slot[k]->row.sop_uid, sop_uid) == 0) {
        old = c->slot[k];
        c->slot[k] = NULL;
    }
    pthread_mutex_unlock(m);
    free(old);
}
