/* store.c - see store.h. */
#include "core/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <libdeflate.h>

#include "core/log.h"
#include "core/sha256.h"
#include "store/store.h"
#include "core/banned.h"

/* Direct I/O: block alignment of buffers, offsets and lengths, and the
 * staging buffer's sizes (256 KiB, 512 KiB, 1 MiB).
 *
 * Staging buffers are mapped, not taken from malloc's heap: a STOW thread
 * allocates one per part and the ingest thread frees it later, while the
 * request's small allocations settle into the freed holes; a heap then grew
 * by ~80 MiB of unusable holes during one 1 GiB STOW of 140 KB instances.
 * A few freed buffers are kept for the next parts (no page faults, no
 * unmapping on the common path). */
#define DIO_ALIGN 4096
#define STAGE_FIRST (256 * 1024)
#define STAGE_MAX (1024 * 1024)
#define STAGE_POOL 8                   /* buffers kept */
#define STAGE_POOL_BYTES (4 << 20)     /* bytes kept */

/* The CRC-32 of an object written with one flush (store_set_one_flush):
 * 4 bytes, little-endian, in the inode (checked by store_open) */
#define XATTR_CRC "user.yingyun.crc32"
#define EXT4_MAGIC 0xEF53u
#define XFS_MAGIC 0x58465342u

struct store {
    char *dir;
    int dir_fd;
    uint64_t reserve;
    _Atomic bool direct;
    _Atomic bool anon; /* temp files made with O_TMPFILE (store_set_tmpfile) */
    _Atomic bool one_flush; /* store_set_one_flush */
    bool sync_fs; /* folders made durable with syncfs (ext4_without_journal) */
    pthread_mutex_t day_lock;
    char day[STORE_REL_MAX]; /* objects/<day> known to exist durably */
    pthread_mutex_t pool_lock;
    struct {
        unsigned char *p;
        size_t cap;
    } pool[STAGE_POOL];        /* free staging buffers */
    unsigned n_pool;
    size_t pool_bytes;
};

static bool ext4_without_journal(int dfd);

static unsigned char *stage_get(struct store *s, size_t cap)
{
    pthread_mutex_lock(&s->pool_lock);
    for (unsigned i = 0; i < s->n_pool; i++) {
        if (s->pool[i].cap == cap) {
            unsigned char *p = s->pool[i].p;
            s->pool[i] = s->pool[--s->n_pool];
            s->pool_bytes -= cap;
            pthread_mutex_unlock(&s->pool_lock);
            return p;
        }
    }
    pthread_mutex_unlock(&s->pool_lock);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void stage_put(struct store *s, unsigned char *p, size_t cap)
{
    if (!p)
        return;
    pthread_mutex_lock(&s->pool_lock);
    if (s->n_pool < STAGE_POOL && s->pool_bytes + cap <= STAGE_POOL_BYTES) {
        s->pool[s->n_pool].p = p;
        s->pool[s->n_pool].cap = cap;
        s->n_pool++;
        s->pool_bytes += cap;
        p = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (p)
        munmap(p, cap);
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static void clean_tmp(const char *tmpdir)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    int dfd = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        (void)unlinkat(dfd, de->d_name, 0);
    }
    closedir(d);
}

int store_open(const char *data_dir, struct store **out)
{
    char p[4096];
    int r = mkdir_p(data_dir);
    if (r < 0)
        return r;
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->day_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    s->dir = strdup(data_dir);
    s->dir_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!s->dir || s->dir_fd < 0) {
        r = s->dir ? -errno : -ENOMEM;
        store_close(s);
        return r;
    }
    const char *subs[] = {"objects", "tmp"};
    for (size_t i = 0; i < YY_ARRAY_LEN(subs); i++) {
        snprintf(p, sizeof(p), "%s/%s", data_dir, subs[i]);
        r = mkdir_p(p);
        if (r < 0) {
            store_close(s);
            return r;
        }
    }
    snprintf(p, sizeof(p), "%s/tmp", data_dir);
    clean_tmp(p);
    s->sync_fs = ext4_without_journal(s->dir_fd);
    store_set_tmpfile(s, true);
    store_set_one_flush(s, true);
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    pthread_mutex_destroy(&s->day_lock);
    for (unsigned i = 0; i < s->n_pool; i++)
        munmap(s->pool[i].p, s->pool[i].cap);
    pthread_mutex_destroy(&s->pool_lock);
    free(s->dir);
    free(s);
}

const char *store_dir(const struct store *s)
{
    return s->dir;
}

void store_set_reserve(struct store *s, uint64_t bytes)
{
    s->reserve = bytes;
}

void store_set_direct(struct store *s, bool on)
{
    atomic_store(&s->direct, on);
}

void store_set_tmpfile(struct store *s, bool on)
{
    /* an unnamed file is linked into place through /proc */
    atomic_store(&s->anon, on && access("/proc/self/fd", X_OK) == 0);
    if (!atomic_load(&s->anon))
        atomic_store(&s->one_flush, false); /* needs them */
}

/* Whether one fsync of a file just linked into a folder makes its entry
 * there durable too, and a 4-byte user xattr fits in the file's inode (no
 * block of its own, which could reach the disk apart from the inode):
 * ext4 (with a journal, fsync commits the transaction of the link; without
 * one, fsync writes the folder of a new entry before its flush) and XFS
 * (fsync forces the log up to the inode's last change, the link). */
static bool one_flush_works(struct store *s)
{
    int dfd = openat(s->dir_fd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return false;
    struct statfs sf;
    bool ok = fstatfs(dfd, &sf) == 0 &&
              ((uint32_t)sf.f_type == EXT4_MAGIC || (uint32_t)sf.f_type == XFS_MAGIC);
    int fd = ok ? openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640) : -1;
    close(dfd);
    if (fd < 0)
        return false;
    static const uint8_t v[4] = {0};
    struct stat st;
    ok = fsetxattr(fd, XATTR_CRC, v, sizeof(v), 0) == 0 && fstat(fd, &st) == 0 &&
         st.st_blocks == 0;
    close(fd);
    return ok;
}

void store_set_one_flush(struct store *s, bool on)
{
    atomic_store(&s->one_flush, on && atomic_load(&s->anon) && one_flush_works(s));
}

bool store_one_flush(struct store *s)
{
    return atomic_load(&s->one_flush);
}

static int day_dir(struct store *s, char out[STORE_REL_MAX]);
static int make_day_dir(struct store *s, const char *dir);

/* An unnamed temp file (O_TMPFILE) in today's folder, where it is linked
 * at commit (an alias of the file is then in that folder only, which is
 * the folder ext4 without a journal writes at its fsync): nothing to name,
 * remove or sync in tmp/, and nothing left behind by a crash. -EOPNOTSUPP
 * where the file system has none; -EINVAL when it refuses O_DIRECT. */
static int open_anon(struct store *s, struct store_tmp *t)
{
    int r = day_dir(s, t->day);
    if (r < 0)
        return r;
    int fl = O_TMPFILE | O_WRONLY | O_CLOEXEC;
    int fd = openat(s->dir_fd, t->day, fl | (t->direct ? O_DIRECT : 0), 0640);
    if (fd < 0 && errno == ENOENT) {
        /* the day's folder was removed by hand since it was made */
        if ((r = make_day_dir(s, t->day)) < 0)
            return r;
        fd = openat(s->dir_fd, t->day, fl | (t->direct ? O_DIRECT : 0), 0640);
    }
    if (fd < 0) {
        if (errno == EINVAL && t->direct) {
            /* O_DIRECT or O_TMPFILE refused: which one? */
            int k = openat(s->dir_fd, t->day, fl, 0640);
            if (k < 0)
                return -EOPNOTSUPP;
            close(k);
            return -EINVAL;
        }
        return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL ? -EOPNOTSUPP : -errno;
    }
    snprintf(t->path, sizeof(t->path), "/proc/self/fd/%d", fd);
    t->fd = fd;
    t->anon = true;
    return 0;
}

void store_tmp_init(struct store_tmp *t)
{
    memset(t, 0, offsetof(struct store_tmp, path));
    t->fd = -1;
    t->path[0] = 0;
}

/* A named temp file, tmp/<random>.part. */
static int open_named(struct store *s, struct store_tmp *t)
{
    uint8_t rnd[12];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EIO;
    char name[32];
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(rnd); i++) {
        name[2 * i] = hex[rnd[i] >> 4];
        name[2 * i + 1] = hex[rnd[i] & 15];
    }
    name[2 * sizeof(rnd)] = 0;
    int n = snprintf(t->path, sizeof(t->path), "%s/tmp/%s.part", s->dir, name);
    if (n < 0 || (size_t)n >= sizeof(t->path))
        return -ENAMETOOLONG;
    t->fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (t->direct ? O_DIRECT : 0),
                 0640);
    if (t->fd < 0) {
        int e = errno;
        t->path[0] = 0;
        return e == EINVAL && t->direct ? -EINVAL : -e;
    }
    return 0;
}

int store_tmp_create(struct store *s, struct store_tmp *t)
{
    store_tmp_init(t);
    t->owner = s;
    t->direct = atomic_load(&s->direct);
    int r = -EOPNOTSUPP;
    for (int tries = 0; tries < 3; tries++) {
        if (atomic_load(&s->anon)) {
            r = open_anon(s, t);
            if (r == -EOPNOTSUPP) {
                atomic_store(&s->anon, false);
                log_debug("store: no O_TMPFILE here: named temp files");
            }
        }
        if (r == -EOPNOTSUPP)
            r = open_named(s, t);
        if (r != -EINVAL || !t->direct)
            break;
        /* this file system has no O_DIRECT (tmpfs before Linux 6.6): the
         * page cache then */
        atomic_store(&s->direct, false);
        t->direct = false;
        r = -EOPNOTSUPP;
    }
    if (r < 0)
        return r;
    t->size = 0;
    if (s->reserve) {
        struct statvfs sv;
        if (fstatvfs(t->fd, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < s->reserve) {
            store_tmp_discard(t);
            return -ENOSPC;
        }
    }
    return 0;
}

static int write_all(struct store_tmp *t, const uint8_t *p, size_t len, off_t at);

/* Where the staging buffer's bytes go in the file. */
static off_t stage_at(const struct store_tmp *t)
{
    return (off_t)(t->size - t->stage_len);
}

/* Writes the staging buffer's whole blocks, keeping the rest. */
static int stage_flush(struct store_tmp *t)
{
    size_t n = t->stage_len & ~(size_t)(DIO_ALIGN - 1);
    if (n == 0)
        return 0;
    int r = write_all(t, t->stage, n, stage_at(t));
    if (r < 0)
        return r;
    memmove(t->stage, t->stage + n, t->stage_len - n);
    t->stage_len -= n;
    t->spilled = true;
    return 0;
}

/* Writes the last partial block (len bytes at at) through the page cache
 * (O_DIRECT off for this write), so the file ends at its size without
 * padding: padding and then truncating made the kernel read the block back
 * from the disk (to zero its end) and write it twice. Its write-back is
 * started at once, to run while the whole blocks are written with O_DIRECT
 * (else it ran inside the fdatasync: rig, fdatasync 1.37 → 0.96 ms, and
 * +8 % and +17 % single-instance STOWs at 4 clients in two sets). */
static int stage_write_tail(struct store_tmp *t, const uint8_t *p, size_t len, off_t at)
{
    if (len == 0)
        return 0;
    int fl = fcntl(t->fd, F_GETFL);
    if (fl < 0)
        return -EIO;
    if ((fl & O_DIRECT) && fcntl(t->fd, F_SETFL, fl & ~O_DIRECT) < 0)
        return -EIO;
    bool direct = t->direct;
    t->direct = false;
    int r = write_all(t, p, len, at);
    t->direct = direct;
    if (r == 0)
        (void)sync_file_range(t->fd, at, (off_t)len, SYNC_FILE_RANGE_WRITE); /* a hint */
    if ((fl & O_DIRECT) && fcntl(t->fd, F_SETFL, fl) < 0 && r == 0)
        r = -EIO;
    return r;
}

/* Makes room for len more bytes in the staging buffer (growing it up to
 * STAGE_MAX, then writing out whole blocks). */
static int stage_room(struct store_tmp *t, size_t len)
{
    size_t need = t->stage_len + len;
    if (need <= t->stage_cap)
        return 0;
    if (t->stage_cap < STAGE_MAX) {
        size_t cap = t->stage_cap ? t->stage_cap : STAGE_FIRST;
        while (cap < need && cap < STAGE_MAX)
            cap *= 2;
        if (cap > STAGE_MAX)
            cap = STAGE_MAX;
        unsigned char *nb = stage_get(t->owner, cap);
        if (!nb)
            return -ENOMEM;
        if (t->stage_len)
            memcpy(nb, t->stage, t->stage_len);
        stage_put(t->owner, t->stage, t->stage_cap);
        t->stage = nb;
        t->stage_cap = cap;
        if (need <= t->stage_cap)
            return 0;
    }
    return stage_flush(t);
}

int store_tmp_write(struct store_tmp *t, const void *data, size_t len)
{
    t->crc = (uint32_t)libdeflate_crc32(t->crc, data, len);
    if (t->direct) {
        const uint8_t *p = data;
        while (len > 0) {
            int r = stage_room(t, len < STAGE_MAX / 2 ? len : STAGE_MAX / 2);
            if (r < 0)
                return r;
            size_t take = t->stage_cap - t->stage_len;
            if (take > len)
                take = len;
            memcpy(t->stage + t->stage_len, p, take);
            t->stage_len += take;
            t->size += take;
            p += take;
            len -= take;
        }
        return 0;
    }
    int r = write_all(t, data, len, (off_t)t->size);
    if (r == 0)
        t->size += len;
    return r;
}

int store_tmp_finish(struct store_tmp *t)
{
    if (!t->direct || t->finished)
        return 0;
    /* the last partial block first (buffered, its write-back started),
     * then the whole blocks with O_DIRECT before it; the whole object
     * stays in the buffer when it was never spilled (parsed from there) */
    size_t len = t->stage_len, blocks = len & ~(size_t)(DIO_ALIGN - 1);
    off_t at = stage_at(t);
    int r = stage_write_tail(t, t->stage + blocks, len - blocks, at + (off_t)blocks);
    if (r == 0 && blocks)
        r = write_all(t, t->stage, blocks, at);
    if (r < 0)
        return r;
    if (t->spilled)
        t->stage_len = 0;
    t->finished = true;
    return 0;
}

const void *store_tmp_mem(const struct store_tmp *t, size_t *len)
{
    if (!t->direct || !t->finished || t->spilled || !t->stage || t->stage_len != t->size)
        return NULL;
    *len = t->stage_len;
    return t->stage;
}

static int write_all(struct store_tmp *t, const uint8_t *p, size_t len, off_t at)
{
    while (len > 0) {
        ssize_t n = pwrite(t->fd, p, len, at);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EINVAL && t->direct) {
                /* O_DIRECT accepted at open but not for these writes:
                 * carry on through the page cache */
                int fl = fcntl(t->fd, F_GETFL);
                if (fl >= 0 && fcntl(t->fd, F_SETFL, fl & ~O_DIRECT) == 0)
                    continue;
            }
            return errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -EIO;
        }
        if (t->direct && (size_t)n < len && (n % DIO_ALIGN) != 0)
            return -EIO; /* a direct write cut inside a block */
        p += n;
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

void store_tmp_discard(struct store_tmp *t)
{
    if (t->fd >= 0)
        close(t->fd); /* an unnamed file goes with its last descriptor */
    t->fd = -1;
    if (t->path[0] && !t->anon)
        (void)unlink(t->path);
    t->path[0] = 0;
    if (t->stage)
        stage_put(t->owner, t->stage, t->stage_cap);
    t->stage = NULL;
    t->stage_len = t->stage_cap = 0;
}

/* "<40 hex>.dcm": the first 160 bits of SHA-256(SOP Instance UID) */
static void object_name(const char *sop_uid, char out[48])
{
    char h[65];
    sha256_hex(sop_uid, strlen(sop_uid), h);
    snprintf(out, 48, "%.40s.dcm", h);
}

bool store_name_matches(const char *rel, const char *sop_uid)
{
    char name[48];
    object_name(sop_uid, name);
    const char *slash = strrchr(rel, '/');
    return slash && strcmp(slash + 1, name) == 0;
}

/* Makes a folder's entries durable. On ext4 without a journal a folder's
 * fsync is not enough: in power-cut tests (tests/powercut, one_flush off)
 * an entry renamed or linked into a folder whose fsync had returned was
 * lost, with its file's inode, now and then (the file's inode, changed by
 * the link, is written by neither fsync). There the whole file system is
 * synced instead (syncfs), which writes every dirty inode and folder
 * block. But syncfs issues its flush (ext4's sync_fs) before it waits for
 * those writes (fs/sync.c: sync_blockdev last), so a write still in
 * flight at the flush could stay in the disk's volatile cache: the
 * folder's fdatasync after it flushes again, once all of them are done. */
static int fsync_dir(struct store *s, const char *rel_dir)
{
    int fd = openat(s->dir_fd, rel_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (s->sync_fs && syncfs(fd) < 0)
        r = -errno;
    if (r == 0 && (s->sync_fs ? fdatasync(fd) : fsync(fd)) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* Whether the folder dfd is on ext4 without a journal: then no jbd2
 * journal of its device is listed in /proc/fs/jbd2 ("<device>-<inode>").
 * When the device cannot be named, the answer is yes (the safe side). */
static bool ext4_without_journal(int dfd)
{
    struct statfs sf;
    struct stat st;
    if (fstatfs(dfd, &sf) < 0 || (uint32_t)sf.f_type != EXT4_MAGIC || fstat(dfd, &st) < 0)
        return false;
    char p[96], line[128], dev[64] = "";
    snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/uevent", major(st.st_dev), minor(st.st_dev));
    FILE *f = fopen(p, "r");
    if (!f)
        return true;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "DEVNAME=", 8) == 0) {
            snprintf(dev, sizeof(dev), "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
            break;
        }
    fclose(f);
    if (!dev[0] || strchr(dev, '/'))
        return true;
    DIR *d = opendir("/proc/fs/jbd2");
    if (!d)
        return true; /* no journal anywhere */
    size_t n = strlen(dev);
    bool journal = false;
    struct dirent *e;
    while (!journal && (e = readdir(d)))
        journal = strncmp(e->d_name, dev, n) == 0 && e->d_name[n] == '-';
    closedir(d);
    return !journal;
}

bool store_syncs_fs(struct store *s)
{
    return s->sync_fs;
}

/* The directory part of a relative path ("objects/20261130"; "." for a
 * name in the data folder itself). */
static void rel_dir(const char *rel, char out[STORE_REL_MAX])
{
    const char *slash = strrchr(rel, '/');
    size_t n = slash ? (size_t)(slash - rel) : 0;
    if (n >= STORE_REL_MAX)
        n = STORE_REL_MAX - 1;
    memcpy(out, rel, n);
    out[n] = 0;
    if (n == 0)
        snprintf(out, STORE_REL_MAX, ".");
}

/* Makes objects/<day> exist with a durable entry in objects/. */
static int make_day_dir(struct store *s, const char *dir)
{
    if (mkdirat(s->dir_fd, dir, 0750) < 0)
        return errno == EEXIST ? 0 : -errno;
    return fsync_dir(s, "objects");
}

/* objects/<UTC day of now>, created the first time a day is used. */
static int day_dir(struct store *s, char out[STORE_REL_MAX])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, STORE_REL_MAX, "objects/%04d%02d%02d", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday);
    pthread_mutex_lock(&s->day_lock);
    int r = 0;
    if (strcmp(s->day, out) != 0) {
        r = make_day_dir(s, out);
        if (r == 0)
            snprintf(s->day, sizeof(s->day), "%s", out);
    }
    pthread_mutex_unlock(&s->day_lock);
    return r;
}

/* Gives the unnamed file t its name rel (in dir), replacing any file
 * there as rename would (never the one being kept: see below). */
static int link_anon(struct store *s, struct store_tmp *t, const char *dir, const char *rel)
{
    for (int tries = 0;; tries++) {
        if (linkat(AT_FDCWD, t->path, s->dir_fd, rel, AT_SYMLINK_FOLLOW) == 0)
            break;
        int e = errno;
        if (tries >= 2)
            return -e;
        if (e == EEXIST) {
            if (unlinkat(s->dir_fd, rel, 0) < 0 && errno != ENOENT)
                return -errno;
        } else if (e == ENOENT) {
            /* the day's directory was removed by hand since it was made */
            int r = make_day_dir(s, dir);
            if (r < 0)
                return r;
        } else {
            return e == ENOSPC || e == EDQUOT ? -ENOSPC : -e;
        }
    }
    return 0;
}

/* Closes the committed t's file: t is consumed. */
static int consume(struct store_tmp *t)
{
    int r = close(t->fd) < 0 ? -EIO : 0;
    t->fd = -1;
    t->path[0] = 0;
    return r;
}

/* One flush (store_set_one_flush): the CRC-32 of the bytes goes into the
 * inode and the file is linked into place; store_commit_finish's fsync
 * then makes its bytes, its inode and its entry durable. A crash before
 * that fsync ends may leave it linked with blocks that never reached the
 * disk: it was not acknowledged, and its CRC tells so
 * (store_check_crc). -EOPNOTSUPP (nothing done) when the xattr cannot
 * be set. */
static int link_one_flush(struct store *s, struct store_tmp *t, const char *dir,
                          const char *rel)
{
    uint8_t v[4] = {(uint8_t)t->crc, (uint8_t)(t->crc >> 8), (uint8_t)(t->crc >> 16),
                    (uint8_t)(t->crc >> 24)};
    if (fsetxattr(t->fd, XATTR_CRC, v, sizeof(v), 0) < 0) {
        if (errno == ENOSPC || errno == EDQUOT)
            return -ENOSPC;
        atomic_store(&s->one_flush, false);
        log_debug("store: no xattr here (errno %d): two flushes per object", errno);
        return -EOPNOTSUPP;
    }
    return link_anon(s, t, dir, rel);
}

int store_commit_finish(struct store *s, struct store_tmp *t, const char *rel)
{
    if (fsync(t->fd) < 0) {
        int r = errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -EIO;
        (void)unlinkat(s->dir_fd, rel, 0); /* not durable: not to be found */
        return r;
    }
    return consume(t);
}

int store_commit_start(struct store *s, struct store_tmp *t, const char *sop_uid,
                       const char *keep, char rel[STORE_REL_MAX], enum store_sync *next)
{
    char dir[STORE_REL_MAX], name[48], tmp_rel[64];
    *next = STORE_SYNC_DIR;
    int r = day_dir(s, dir);
    if (r < 0)
        return r;
    object_name(sop_uid, name);
    if (snprintf(rel, STORE_REL_MAX, "%s/%s", dir, name) >= STORE_REL_MAX)
        return -ENAMETOOLONG;
    if (keep && strcmp(keep, rel) == 0) {
        /* replacing an object stored today: never rename over it (if the
         * index cannot record the new one, the old must still be there) */
        size_t n = strlen(dir);
        if (n + 2 > sizeof(dir))
            return -ENAMETOOLONG;
        dir[n] = 'r';
        dir[n + 1] = 0;
        if ((r = make_day_dir(s, dir)) < 0)
            return r;
        if (snprintf(rel, STORE_REL_MAX, "%s/%s", dir, name) >= STORE_REL_MAX)
            return -ENAMETOOLONG;
    }
    r = store_tmp_finish(t);
    if (r < 0)
        return r;
    if (t->anon && atomic_load(&s->one_flush) && strcmp(t->day, dir) == 0) {
        r = link_one_flush(s, t, dir, rel);
        if (r != -EOPNOTSUPP) {
            *next = STORE_SYNC_FILE;
            return r;
        }
    }
    /* two flushes: the file's, then (store_sync_dir) its folder's */
    if (fdatasync(t->fd) < 0)
        return errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -EIO;
    if (t->anon) {
        r = link_anon(s, t, dir, rel);
        return r < 0 ? r : consume(t);
    }
    if (close(t->fd) < 0) {
        t->fd = -1;
        return -EIO;
    }
    t->fd = -1;
    const char *base = strrchr(t->path, '/');
    snprintf(tmp_rel, sizeof(tmp_rel), "tmp%s", base ? base : "/");
    if (renameat(s->dir_fd, tmp_rel, s->dir_fd, rel) < 0) {
        /* the day's directory was removed by hand since it was made */
        if (errno != ENOENT || make_day_dir(s, dir) < 0 ||
            renameat(s->dir_fd, tmp_rel, s->dir_fd, rel) < 0)
            return -errno;
    }
    t->path[0] = 0; /* consumed */
    return 0;
}

int store_sync_dir(struct store *s, const char *rel)
{
    char dir[STORE_REL_MAX];
    rel_dir(rel, dir);
    return fsync_dir(s, dir);
}

int store_commit(struct store *s, struct store_tmp *t, const char *sop_uid,
                 char rel[STORE_REL_MAX])
{
    enum store_sync next;
    int r = store_commit_start(s, t, sop_uid, NULL, rel, &next);
    if (r < 0)
        return r;
    return next == STORE_SYNC_FILE ? store_commit_finish(s, t, rel) : store_sync_dir(s, rel);
}

int store_open_object(struct store *s, const char *rel, int *fd)
{
    if (strncmp(rel, "objects/", 8) != 0 || strstr(rel, ".."))
        return -EINVAL;
    *fd = openat(s->dir_fd, rel, O_RDONLY | O_CLOEXEC);
    return *fd < 0 ? -errno : 0;
}

int store_unlink(struct store *s, const char *rel)
{
    if (strncmp(rel, "objects/", 8) != 0 || strstr(rel, ".."))
        return -EINVAL;
    if (unlinkat(s->dir_fd, rel, 0) < 0 && errno != ENOENT)
        return -errno;
    char dir[STORE_REL_MAX];
    rel_dir(rel, dir);
    int r = fsync_dir(s, dir);
    return r == -ENOENT ? 0 : r;
}

int store_check_crc(int fd)
{
    uint8_t v[4];
    ssize_t n = fgetxattr(fd, XATTR_CRC, v, sizeof(v));
    if (n < 0)
        /* none: linked once durable (two flushes, or before 0.3) */
        return errno == ENODATA || errno == ENOTSUP ? 0 : -EIO;
    if (n != (ssize_t)sizeof(v))
        return -EBADMSG;
    enum { CHUNK = 256 * 1024 };
    uint8_t *b = malloc(CHUNK);
    if (!b)
        return -ENOMEM;
    uint32_t want = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 |
                    (uint32_t)v[3] << 24;
    uint32_t crc = 0;
    int r = 0;
    for (off_t off = 0;;) {
        ssize_t k = pread(fd, b, CHUNK, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -EIO;
            break;
        }
        if (k == 0)
            break;
        crc = (uint32_t)libdeflate_crc32(crc, b, (size_t)k);
        off += k;
    }
    free(b);
    return r < 0 ? r : crc == want ? 0 : -EBADMSG;
}

int store_set_aside(struct store *s, const char *rel, char out[STORE_REL_MAX])
{
    if (strncmp(rel, "objects/", 8) != 0 || strstr(rel, "..") || strlen(rel) >= STORE_REL_MAX)
        return -EINVAL;
    /* damaged/<day>[r]-<40 hex>.dcm (or ab-cd-<40 hex>.dcm) */
    char name[STORE_REL_MAX];
    snprintf(name, sizeof(name), "%s", rel + 8);
    for (char *c = name; *c; c++)
        if (*c == '/')
            *c = '-';
    if (snprintf(out, STORE_REL_MAX, "damaged/%s", name) >= STORE_REL_MAX)
        return -ENAMETOOLONG;
    if (mkdirat(s->dir_fd, "damaged", 0750) < 0 && errno != EEXIST)
        return -errno;
    if (renameat(s->dir_fd, rel, s->dir_fd, out) < 0)
        return -errno;
    char dir[STORE_REL_MAX];
    rel_dir(rel, dir);
    int r = fsync_dir(s, "damaged");
    int r2 = fsync_dir(s, dir);
    return r < 0 ? r : r2;
}

int store_same_content(struct store *s, struct store_tmp *t, const char *rel, bool *same)
{
    *same = false;
    int a = open(t->path, O_RDONLY | O_CLOEXEC);
    if (a < 0)
        return -errno;
    int b;
    int r = store_open_object(s, rel, &b);
    if (r < 0) {
        close(a);
        return r == -ENOENT ? 0 : r;
    }
    struct stat sa, sb;
    if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0) {
        r = -EIO;
        goto out;
    }
    if (sa.st_size != sb.st_size)
        goto out;
    enum { CHUNK = 65536 };
    uint8_t *x = malloc(2 * CHUNK);
    if (!x) {
        r = -ENOMEM;
        goto out;
    }
    *same = true;
    for (off_t off = 0; off < sa.st_size;) {
        ssize_t na = pread(a, x, CHUNK, off), nb = pread(b, x + CHUNK, CHUNK, off);
        if (na <= 0 || na != nb) {
            *same = false;
            r = na < 0 || nb < 0 ? -EIO : 0;
            break;
        }
        if (memcmp(x, x + CHUNK, (size_t)na) != 0) {
            *same = false;
            break;
        }
        off += na;
    }
    free(x);
out:
    close(a);
    close(b);
    return r;
}

static bool hex_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == 0;
}

/* Calls fn for each "<40 hex>.dcm" file in the directory rel_dir. */
static int walk_files(const char *dir, const char *rel_dir, int (*fn)(void *ctx, const char *rel),
                      void *ctx)
{
    char p[4096];
    if (snprintf(p, sizeof(p), "%s/%s", dir, rel_dir) >= (int)sizeof(p))
        return 0;
    DIR *d = opendir(p);
    if (!d)
        return 0;
    int r = 0;
    struct dirent *c;
    while (r == 0 && (c = readdir(d)) != NULL) {
        size_t l = strlen(c->d_name);
        if (l != 44 || strcmp(c->d_name + 40, ".dcm") != 0)
            continue;
        char rel[STORE_REL_MAX];
        if (snprintf(rel, sizeof(rel), "%s/%s", rel_dir, c->d_name) < (int)sizeof(rel))
            r = fn(ctx, rel);
    }
    closedir(d);
    return r;
}

static int walk(struct store *s, uint32_t since_day, bool legacy,
                int (*fn)(void *ctx, const char *rel), void *ctx);

int store_walk(struct store *s, int (*fn)(void *ctx, const char *rel), void *ctx)
{
    return walk(s, 0, true, fn, ctx);
}

int store_walk_since(struct store *s, uint32_t since_day, int (*fn)(void *ctx, const char *rel),
                     void *ctx)
{
    return walk(s, since_day, false, fn, ctx);
}

static int walk(struct store *s, uint32_t since_day, bool legacy,
                int (*fn)(void *ctx, const char *rel), void *ctx)
{
    char p1[4096], p2[4096];
    snprintf(p1, sizeof(p1), "%s/objects", s->dir);
    DIR *d1 = opendir(p1);
    if (!d1)
        return -errno;
    int r = 0;
    struct dirent *a;
    while (r == 0 && (a = readdir(d1)) != NULL) {
        size_t la = strlen(a->d_name);
        char rel[STORE_REL_MAX];
        if ((la == 8 || (la == 9 && a->d_name[8] == 'r')) &&
            strspn(a->d_name, "0123456789") == 8) { /* objects/<day>[r]/<40>.dcm */
            if (strtoul(a->d_name, NULL, 10) < since_day)
                continue;
            snprintf(rel, sizeof(rel), "objects/%.9s", a->d_name);
            r = walk_files(s->dir, rel, fn, ctx);
            continue;
        }
        /* objects/ab/cd/<40>.dcm (before 0.2) */
        if (!legacy || la != 2 || !hex_name(a->d_name, 2))
            continue;
        if (snprintf(p2, sizeof(p2), "%s/%s", p1, a->d_name) >= (int)sizeof(p2))
            continue;
        DIR *d2 = opendir(p2);
        if (!d2)
            continue;
        struct dirent *b;
        while (r == 0 && (b = readdir(d2)) != NULL) {
            if (strlen(b->d_name) != 2 || !hex_name(b->d_name, 2))
                continue;
            snprintf(rel, sizeof(rel), "objects/%s/%s", a->d_name, b->d_name);
            r = walk_files(s->dir, rel, fn, ctx);
        }
        closedir(d2);
    }
    closedir(d1);
    return r;
}
