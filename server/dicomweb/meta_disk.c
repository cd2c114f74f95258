/*
 * meta_disk.c - see meta_disk.h.
 *
 * File format: a 128-byte text header "YYMETA1 <etag hex> <body length>"
 * padded with spaces and ending in '\n', then the gzip body. A file whose
 * header does not parse, names another ETag or disagrees with the file's
 * size is treated as absent (and replaced by the next answer).
 *
 * Writes: one background thread at a time; temp file, fdatasync, rename
 * (no directory fsync: a rename lost in a crash is only a miss).
 */
#include "core/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "core/sha256.h"
#include "dicomweb/meta_disk.h"
#include "render/cache.h"
#include "core/banned.h"

#define HDR_LEN 128
#define MAGIC "YYMETA1 "
#define CHUNK (64 * 1024)
#define MAX_EVICT_SCAN 100000

/* <sha256(study)>-<sha256(series) or "study">.gz */
#define NAME_CAP 160

struct job {
    struct meta_disk *d;
    char name[NAME_CAP], etag[65];
    uint64_t gen;
    void *body;
    size_t len;
    bool is_gzip;
    struct render_cache *mem;
};

struct meta_disk {
    int dir_fd;
    uint64_t max_bytes;
    pthread_mutex_t lock;
    uint64_t total; /* bytes of the files, approximately */
    bool thread_started;
    pthread_t thread;
    atomic_bool busy;
    uint64_t gen; /* bumped by meta_disk_forget: a write started before is dropped */
};

static void file_name(const char *study_uid, const char *series_uid, char out[NAME_CAP])
{
    char a[65], b[65];
    sha256_hex(study_uid, strlen(study_uid), a);
    if (series_uid)
        sha256_hex(series_uid, strlen(series_uid), b);
    snprintf(out, NAME_CAP, "%s-%s.gz", a, series_uid ? b : "study");
}

static bool is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* the files' total size; removes temp files left by a crash */
static uint64_t scan_total(int dir_fd)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    uint64_t total = 0;
    struct dirent *e;
    struct stat st;
    for (unsigned n = 0; n < MAX_EVICT_SCAN && (e = readdir(dir)); n++) {
        size_t nl = strlen(e->d_name);
        if (e->d_name[0] == '.' && nl > 4 && !strcmp(e->d_name + nl - 4, ".tmp"))
            unlinkat(dir_fd, e->d_name, 0); /* a write cut short by a crash */
        else if (e->d_name[0] != '.' && fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(dir);
    return total;
}

int meta_disk_open(const char *data_dir, uint64_t max_bytes, struct meta_disk **out)
{
    *out = NULL;
    if (!max_bytes)
        return 0;
    char path[1100];
    snprintf(path, sizeof(path), "%s/cache", data_dir);
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof(path), "%s/cache/metadata", data_dir);
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return -errno;
    struct meta_disk *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dir_fd < 0) {
        int e = -errno;
        free(d);
        return e;
    }
    d->max_bytes = max_bytes;
    pthread_mutex_init(&d->lock, NULL);
    d->total = scan_total(d->dir_fd);
    *out = d;
    return 0;
}

void meta_disk_close(struct meta_disk *d)
{
    if (!d)
        return;
    if (d->thread_started)
        pthread_join(d->thread, NULL);
    pthread_mutex_destroy(&d->lock);
    close(d->dir_fd);
    free(d);
}

int meta_disk_get(struct meta_disk *d, const char *study_uid, const char *series_uid,
                  const char *etag_hex, int *fd, uint64_t *off, uint64_t *len)
{
    if (!d || !study_uid || !is_hex64(etag_hex))
        return 0;
    char name[NAME_CAP];
    file_name(study_uid, series_uid, name);
    int f = openat(d->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0)
        return 0;
    char hdr[HDR_LEN + 1];
    struct stat st;
    if (pread(f, hdr, HDR_LEN, 0) != HDR_LEN || fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return 0;
    }
    hdr[HDR_LEN] = 0;
    unsigned long long blen = 0;
    if (memcmp(hdr, MAGIC, strlen(MAGIC)) || memcmp(hdr + strlen(MAGIC), etag_hex, 64) ||
        hdr[strlen(MAGIC) + 64] != ' ' || sscanf(hdr + strlen(MAGIC) + 65, "%20llu", &blen) != 1 ||
        hdr[HDR_LEN - 1] != '\n' || blen < 18 || (uint64_t)st.st_size != HDR_LEN + blen) {
        close(f);
        return 0;
    }
    *fd = f;
    *off = HDR_LEN;
    *len = blen;
    return 1;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* deflates (inflating first when the input is gzip) into fd as one gzip
 * stream; *out_len gets the bytes written, *copy (when mem is wanted) the
 * body itself */
static int recompress(const struct job *j, int fd, uint64_t *out_len, unsigned char **copy,
                      size_t *copy_len)
{
    z_stream in, def;
    memset(&in, 0, sizeof(in));
    memset(&def, 0, sizeof(def));
    if (deflateInit2(&def, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    if (j->is_gzip && inflateInit2(&in, 15 + 16) != Z_OK) {
        deflateEnd(&def);
        return -ENOMEM;
    }
    unsigned char *mid = malloc(CHUNK), *zout = malloc(CHUNK);
    size_t cap = 0, clen = 0;
    unsigned char *c = NULL;
    int r = mid && zout ? 0 : -ENOMEM;
    const unsigned char *src = j->body;
    size_t left = j->len;
    bool in_done = false;
    uint64_t total = 0;
    while (r == 0) {
        /* next input piece for deflate */
        size_t mlen = 0;
        const unsigned char *piece;
        if (j->is_gzip) {
            if (!in_done) {
                in.next_in = (unsigned char *)src;
                in.avail_in = (uInt)(left < CHUNK ? left : CHUNK);
                size_t given = in.avail_in;
                in.next_out = mid;
                in.avail_out = CHUNK;
                int zr = inflate(&in, Z_NO_FLUSH);
                if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && given == 0)) {
                    r = -EBADMSG;
                    break;
                }
                src += given - in.avail_in;
                left -= given - in.avail_in;
                mlen = CHUNK - in.avail_out;
                if (zr == Z_STREAM_END) {
                    in_done = true;
                } else if (left == 0 && mlen == 0) {
                    r = -EBADMSG; /* a truncated body is not kept */
                    break;
                }
            }
            piece = mid;
        } else {
            mlen = left < CHUNK ? left : CHUNK;
            piece = src;
            src += mlen;
            left -= mlen;
            in_done = left == 0;
        }
        def.next_in = (unsigned char *)piece;
        def.avail_in = (uInt)mlen;
        int flush = in_done ? Z_FINISH : Z_NO_FLUSH;
        int dr;
        do {
            def.next_out = zout;
            def.avail_out = CHUNK;
            dr = deflate(&def, flush);
            size_t n = CHUNK - def.avail_out;
            if (n) {
                r = write_all(fd, zout, n);
                total += n;
                if (r == 0 && copy) {
                    if (clen + n > cap) {
                        size_t nc = cap ? cap * 2 : CHUNK;
                        while (nc < clen + n)
                            nc *= 2;
                        unsigned char *g = realloc(c, nc);
                        if (!g) {
                            r = -ENOMEM;
                            break;
                        }
                        c = g;
                        cap = nc;
                    }
                    memcpy(c + clen, zout, n);
                    clen += n;
                }
            }
        } while (r == 0 && def.avail_out == 0);
        if (r == 0 && in_done && dr == Z_STREAM_END)
            break;
        if (r == 0 && in_done && dr != Z_STREAM_END && dr != Z_OK && dr != Z_BUF_ERROR)
            r = -EIO;
    }
    if (j->is_gzip)
        inflateEnd(&in);
    deflateEnd(&def);
    free(mid);
    free(zout);
    if (r < 0 || !copy) {
        free(c);
    } else {
        *copy = c;
        *copy_len = clen;
    }
    *out_len = total;
    return r;
}

struct old_file {
    char name[NAME_CAP];
    int64_t mtime;
    uint64_t size;
};

static int by_mtime(const void *a, const void *b)
{
    const struct old_file *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* removes the oldest files, never keep (the one just written), until the
 * total is under 3/4 of the bound */
static void evict(struct meta_disk *d, const char *keep)
{
    int fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct old_file *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *e;
    struct stat st;
    for (unsigned k = 0; k < MAX_EVICT_SCAN && (e = readdir(dir)); k++) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(v->name) ||
            !strcmp(e->d_name, keep) ||
            fstatat(d->dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct old_file *g = realloc(v, nc * sizeof(*v));
            if (!g)
                break;
            v = g;
            cap = nc;
        }
        snprintf(v[n].name, sizeof(v[n].name), "%s", e->d_name);
        v[n].mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        v[n].size = (uint64_t)st.st_size;
        total += v[n].size;
        n++;
    }
    closedir(dir);
    qsort(v, n, sizeof(*v), by_mtime);
    struct stat ks;
    if (fstatat(d->dir_fd, keep, &ks, AT_SYMLINK_NOFOLLOW) == 0)
        total += (uint64_t)ks.st_size;
    for (size_t i = 0; i < n && total > d->max_bytes / 4 * 3; i++)
        if (unlinkat(d->dir_fd, v[i].name, 0) == 0)
            total -= v[i].size;
    free(v);
    pthread_mutex_lock(&d->lock);
    d->total = total;
    pthread_mutex_unlock(&d->lock);
}

static void *writer(void *arg)
{
    struct job *j = arg;
    struct meta_disk *d = j->d;
    char tmp[NAME_CAP + 8];
    const char *name = j->name;
    snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    int fd = openat(d->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    int r = fd >= 0 ? 0 : -errno;
    char hdr[HDR_LEN];
    memset(hdr, ' ', sizeof(hdr));
    hdr[HDR_LEN - 1] = '\n';
    if (r == 0)
        r = write_all(fd, hdr, sizeof(hdr)); /* placeholder until the length is known */
    uint64_t blen = 0;
    unsigned char *copy = NULL;
    size_t copy_len = 0;
    if (r == 0)
        r = recompress(j, fd, &blen, j->mem ? &copy : NULL, &copy_len);
    if (r == 0) {
        int hl = snprintf(hdr, sizeof(hdr), "%s%s %llu", MAGIC, j->etag, (unsigned long long)blen);
        hdr[hl] = ' ';
        if (pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
            r = -EIO;
    }
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    struct stat old;
    bool had_old = fstatat(d->dir_fd, name, &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (r == 0 && HDR_LEN + blen > d->max_bytes)
        r = -EFBIG; /* larger than the whole cache: not kept */
    pthread_mutex_lock(&d->lock);
    if (r == 0 && j->gen != d->gen)
        r = -ESTALE; /* deleted meanwhile: its metadata must not come back */
    if (r == 0 && renameat(d->dir_fd, tmp, d->dir_fd, name) < 0)
        r = -errno;
    pthread_mutex_unlock(&d->lock);
    if (fd >= 0)
        close(fd);
    if (r < 0) {
        unlinkat(d->dir_fd, tmp, 0);
        if (r != -EFBIG && r != -ESTALE)
            log_warn("metadata cache: could not write %.12s (%s)", name, strerror(-r));
    } else {
        if (j->mem && copy)
            render_cache_put(j->mem, j->etag, copy, copy_len, "application/dicom+json");
        pthread_mutex_lock(&d->lock);
        d->total += HDR_LEN + blen;
        if (had_old && d->total >= (uint64_t)old.st_size)
            d->total -= (uint64_t)old.st_size;
        bool over = d->total > d->max_bytes;
        pthread_mutex_unlock(&d->lock);
        if (over)
            evict(d, name);
    }
    free(copy);
    free(j->body);
    free(j);
    atomic_store(&d->busy, false);
    return NULL;
}

void meta_disk_put(struct meta_disk *d, const char *study_uid, const char *series_uid,
                   const char *etag_hex, void *body, size_t len, bool is_gzip,
                   struct render_cache *mem)
{
    if (!d || !body || !study_uid || !is_hex64(etag_hex)) {
        free(body);
        return;
    }
    bool expected = false;
    if (!atomic_compare_exchange_strong(&d->busy, &expected, true)) {
        free(body);
        return;
    }
    /* the previous writer has finished (busy was false): reap it */
    if (d->thread_started) {
        pthread_join(d->thread, NULL);
        d->thread_started = false;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        free(body);
        atomic_store(&d->busy, false);
        return;
    }
    j->d = d;
    file_name(study_uid, series_uid, j->name);
    pthread_mutex_lock(&d->lock);
    j->gen = d->gen;
    pthread_mutex_unlock(&d->lock);
    snprintf(j->etag, sizeof(j->etag), "%s", etag_hex);
    j->body = body;
    j->len = len;
    j->is_gzip = is_gzip;
    j->mem = mem;
    if (pthread_create(&d->thread, NULL, writer, j) != 0) {
        free(j->body);
        free(j);
        atomic_store(&d->busy, false);
        return;
    }
    d->thread_started = true;
}

void meta_disk_forget(struct meta_disk *d, const char *study_uid, const char *series_uid)
{
    if (!d || !study_uid)
        return;
    char name[NAME_CAP], study_name[NAME_CAP];
    file_name(study_uid, NULL, study_name);
    pthread_mutex_lock(&d->lock);
    d->gen++;
    unlinkat(d->dir_fd, study_name, 0);
    if (series_uid) {
        file_name(study_uid, series_uid, name);
        unlinkat(d->dir_fd, name, 0);
    } else {
        /* every series of the study: the files named <study hash>-... */
        int fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dir && fd >= 0)
            close(fd);
        struct dirent *e;
        for (unsigned k = 0; dir && k < MAX_EVICT_SCAN && (e = readdir(dir)); k++)
            if (!strncmp(e->d_name, study_name, 65))
                unlinkat(d->dir_fd, e->d_name, 0);
        if (dir)
            closedir(dir);
    }
    pthread_mutex_unlock(&d->lock);
}

void meta_disk_purge(const char *data_dir)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/cache/metadata", data_dir);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir && fd >= 0)
        close(fd);
    struct dirent *e;
    for (unsigned k = 0; dir && k < MAX_EVICT_SCAN && (e = readdir(dir)); k++)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dfd, e->d_name, 0);
    if (dir)
        closedir(dir);
    close(dfd);
}
