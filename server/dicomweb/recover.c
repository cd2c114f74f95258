/* recover.c - see recover.h. */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "dicomweb/ingest.h"
#include "dicomweb/recover.h"
#include "index/index.h"
#include "store/store.h"
#include "core/banned.h"

#define DAY_MS (24LL * 3600 * 1000)
/* day folders walked before the newest surviving row's (clock steps, UTC) */
#define FOLDER_DAYS 2
/* rows read back: every row of the folders walked, with room to spare */
#define ROW_WINDOW_MS ((FOLDER_DAYS + 2) * DAY_MS)

/* "objects/<day>[r]/<40 hex>.dcm" as a fixed key */
struct key {
    uint32_t day; /* YYYYMMDD * 2 + 1 for the "r" folder */
    uint8_t name[20];
};

struct keys {
    struct key *v;
    size_t n, cap;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses a day-folder path; false for any other (the layout before 0.2). */
static bool key_of(const char *rel, struct key *k)
{
    static const char pre[] = "objects/";
    if (strncmp(rel, pre, sizeof(pre) - 1) != 0)
        return false;
    const char *p = rel + sizeof(pre) - 1;
    uint32_t day = 0;
    for (int i = 0; i < 8; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        day = day * 10 + (uint32_t)(p[i] - '0');
    }
    p += 8;
    bool r = *p == 'r';
    p += r;
    if (*p++ != '/')
        return false;
    for (int i = 0; i < 20; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        k->name[i] = (uint8_t)(hi << 4 | lo);
    }
    if (strcmp(p + 40, ".dcm") != 0)
        return false;
    k->day = day * 2 + r;
    return true;
}

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return memcmp(x->name, y->name, sizeof(x->name));
}

static int add_row(void *ctx, const char *rel)
{
    struct keys *ks = ctx;
    struct key k;
    if (!key_of(rel, &k))
        return 0;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 4096;
        struct key *nv = realloc(ks->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        ks->v = nv;
        ks->cap = cap;
    }
    ks->v[ks->n++] = k;
    return 0;
}

struct walk_ctx {
    const struct keys *ks;
    struct ingest *g;
    struct recover_stats *st;
};

static int check_file(void *ctx, const char *rel)
{
    struct walk_ctx *w = ctx;
    struct key k;
    w->st->files++;
    if (!key_of(rel, &k) || (w->ks->n && bsearch(&k, w->ks->v, w->ks->n, sizeof(k), key_cmp)))
        return 0;
    struct ingest_result res;
    int r = ingest_recover(w->g, rel, &res);
    if (res.outcome == INGEST_STORED) {
        w->st->indexed++;
        log_warn("recovery: %s was stored but not indexed (unclean stop): indexed", rel);
    } else if (res.outcome == INGEST_FAILED) {
        w->st->failed++;
        log_error("recovery: %s could not be indexed: %s", rel, res.reason);
    }
    return r == -ENOSPC || r == -ENOMEM ? r : 0;
}

#define NOTE_NAME "unindexed"
#define NOTE_MAX (4u << 20) /* bytes of it read at a start */

static void note_path(struct store *s, char out[4200])
{
    snprintf(out, 4200, "%s/" NOTE_NAME, store_dir(s));
}

int recover_note_unindexed(struct store *s, const char *rel)
{
    struct key k;
    if (!key_of(rel, &k))
        return -EINVAL;
    char p[4200];
    note_path(s, p);
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    char line[STORE_REL_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s\n", rel);
    int r = 0;
    if (n < 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n ||
        fdatasync(fd) < 0)
        r = -EIO;
    close(fd);
    return r == 0 ? store_sync_dir(s, NOTE_NAME) : r; /* its entry, when new */
}

/* Indexes the objects named in <data>/unindexed; removes it when none
 * failed (a failure is logged and tried again at the next start). */
static int recover_noted(struct store *s, struct ingest *g, struct recover_stats *st)
{
    char p[4200];
    note_path(s, p);
    FILE *f = fopen(p, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char line[256];
    size_t read_bytes = 0;
    bool keep = false;
    int r = 0;
    while (r == 0 && read_bytes < NOTE_MAX && fgets(line, sizeof(line), f)) {
        read_bytes += strlen(line);
        line[strcspn(line, "\n")] = 0;
        struct key k;
        if (!key_of(line, &k)) {
            if (line[0])
                log_warn("recovery: %s: not an object path: %.80s", p, line);
            continue;
        }
        struct ingest_result res;
        int e = ingest_recover(g, line, &res);
        if (res.outcome == INGEST_STORED) {
            st->indexed++;
            log_warn("recovery: %s was answered but its index row was lost: indexed", line);
        } else if (res.outcome == INGEST_FAILED) {
            st->failed++;
            keep = true;
            log_error("recovery: %s could not be indexed: %s", line, res.reason);
        }
        if (e == -ENOSPC || e == -ENOMEM)
            r = e;
    }
    keep = keep || r < 0 || !feof(f);
    fclose(f);
    if (!keep && unlink(p) == 0)
        (void)store_sync_dir(s, NOTE_NAME);
    return r;
}

int recover_recent(struct store *s, struct index *ix, struct ingest *g, struct recover_stats *st)
{
    memset(st, 0, sizeof(*st));
    struct keys ks = {0};
    int64_t newest = 0;
    int r = index_recent_paths(ix, ROW_WINDOW_MS, &newest, add_row, &ks);
    if (r < 0) {
        free(ks.v);
        return r;
    }
    if (ks.n)
        qsort(ks.v, ks.n, sizeof(*ks.v), key_cmp);
    /* an empty index (every commit lost, or a new index beside old
     * objects, which `yingyun reindex` is for): the days before today */
    int64_t ref = newest;
    if (ref <= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ref = (int64_t)ts.tv_sec * 1000;
    }
    uint32_t since = 0;
    time_t t = (time_t)((ref - FOLDER_DAYS * DAY_MS) / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        since = (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
    struct walk_ctx w = {&ks, g, st};
    r = store_walk_since(s, since, check_file, &w);
    free(ks.v);
    if (r == -ENOENT)
        r = 0; /* no objects folder yet */
    int rn = recover_noted(s, g, st);
    return r < 0 ? r : rn;
}
