/*
 * app.h - the running server's shared state, created by main and borrowed
 * by every request: configuration, store, index, ingest pipeline.
 *
 * Everything here is thread-safe or read-only after start.
 */
#ifndef YY_APP_H
#define YY_APP_H

#include "config.h"

struct store;
struct index;
struct ingest;
struct render_cache;
struct meta_disk;
struct inst_cache;

struct app {
    struct config cfg;
    struct store *store;
    struct index *index;
    struct ingest *ingest;
    struct render_cache *cache; /* rendered images; may be NULL */
    struct render_cache *meta_cache; /* assembled series/study metadata; may be NULL */
    struct meta_disk *meta_disk;     /* the same on disk, gzip'd; may be NULL */
    struct inst_cache *inst_cache;   /* recent instance lookups (WADO); may be NULL */
    char web_root[1024];        /* resolved viewer directory ("" = none) */
};

#endif
