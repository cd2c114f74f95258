/* Unit tests for store/store.c: objects written with and without O_DIRECT,
 * in unnamed (O_TMPFILE) and named temp files (sizes around the block and
 * staging-buffer limits, irregular chunks) come back byte for byte; small
 * ones stay in memory for parsing; an unnamed temp file leaves no name in
 * tmp/; a commit replaces a leftover file of the same name; tmpfs (which
 * refuses O_DIRECT before Linux 6.6) works either way. One flush (ext4,
 * XFS): the object is linked before its fsync, carries the CRC-32 of its
 * bytes, a changed block is found and set aside; two flushes and the
 * replacement folder carry none. Real files in a temp directory ($TMPDIR,
 * and /dev/shm when there is one). */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "store/store.h"

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* Names in dir/tmp (not . and ..). */
static unsigned tmp_names(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/tmp", dir);
    DIR *d = opendir(p);
    if (!d)
        return 999;
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Writes n bytes in irregular chunks, commits, reads back. expect_anon:
 * the temp file must be unnamed (1), named (0), either (-1). */
static void roundtrip(struct store *s, size_t n, unsigned seed, int expect_mem, int expect_anon)
{
    uint8_t *data = malloc(n ? n : 1);
    fill(data, n, seed);
    struct store_tmp t;
    CHECK_INT_EQ(store_tmp_create(s, &t), 0);
    static const size_t chunks[] = {1, 1000, 4095, 70000, 333, 262144, 9};
    size_t at = 0;
    for (unsigned i = 0; at < n; i++) {
        size_t c = chunks[i % YY_ARRAY_LEN(chunks)];
        if (c > n - at)
            c = n - at;
        CHECK_INT_EQ(store_tmp_write(&t, data + at, c), 0);
        at += c;
    }
    CHECK_INT_EQ(store_tmp_finish(&t), 0);
    CHECK_INT_EQ(store_tmp_finish(&t), 0); /* idempotent */
    if (expect_anon >= 0)
        CHECK_INT_EQ(t.anon, expect_anon);
    if (t.anon)
        CHECK_INT_EQ(tmp_names(store_dir(s)), 0); /* nothing named in tmp/ */
    size_t ml = 0;
    const void *m = store_tmp_mem(&t, &ml);
    if (expect_mem >= 0)
        CHECK_INT_EQ(m != NULL, expect_mem);
    if (m) {
        CHECK_INT_EQ(ml, n);
        CHECK(memcmp(m, data, n) == 0);
    }
    struct stat st;
    CHECK_INT_EQ(stat(t.path, &st), 0);
    CHECK_INT_EQ((uint64_t)st.st_size, (uint64_t)n); /* no padding left */
    char uid[64], rel[STORE_REL_MAX];
    snprintf(uid, sizeof(uid), "1.2.3.%u.%zu", seed, n);
    CHECK_INT_EQ(store_commit(s, &t, uid, rel), 0);
    store_tmp_discard(&t); /* frees the buffer of a committed tmp */
    int fd = -1;
    CHECK_INT_EQ(store_open_object(s, rel, &fd), 0);
    uint8_t *back = malloc(n + 1);
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, back + got, n + 1 - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    CHECK_INT_EQ(got, n);
    CHECK(memcmp(back, data, n) == 0);
    free(back);
    free(data);
}

static const size_t SIZES[] = {0, 1, 4095, 4096, 4097, 139980, 262144, 524288 + 1234,
                               1000000, 3 * 1024 * 1024 + 123};

static void sizes_in(const char *base, bool direct, int direct_works, bool anon)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/yy-store-XXXXXX", base);
    if (!mkdtemp(dir)) {
        CHECK_FAIL_("mkdtemp in %s: %s", base, strerror(errno));
        return;
    }
    struct store *s = NULL;
    CHECK_INT_EQ(store_open(dir, &s), 0);
    if (!s)
        return;
    store_set_direct(s, direct);
    store_set_tmpfile(s, anon);
    for (unsigned i = 0; i < YY_ARRAY_LEN(SIZES); i++) {
        /* in memory: direct I/O, something written, and within the buffer */
        int mem = direct && SIZES[i] > 0 && SIZES[i] <= 1000000;
        roundtrip(s, SIZES[i], i + 1, direct_works < 0 ? -1 : mem && direct_works,
                  anon ? -1 : 0);
    }
    /* a leftover file under the object's name (a crash between a link and
     * the removal of a replaced file) is replaced, as rename would */
    for (unsigned k = 0; k < 2; k++) {
        uint8_t b[3000];
        memset(b, 'a' + (int)k, sizeof(b));
        struct store_tmp t;
        char rel[STORE_REL_MAX];
        CHECK_INT_EQ(store_tmp_create(s, &t), 0);
        CHECK_INT_EQ(store_tmp_write(&t, b, sizeof(b) - k), 0);
        CHECK_INT_EQ(store_commit(s, &t, "1.2.3.4.5.6", rel), 0);
        store_tmp_discard(&t);
        int fd = -1;
        CHECK_INT_EQ(store_open_object(s, rel, &fd), 0);
        uint8_t back[4000];
        ssize_t got = fd >= 0 ? read(fd, back, sizeof(back)) : -1;
        if (fd >= 0)
            close(fd);
        CHECK_INT_EQ(got, (ssize_t)(sizeof(b) - k));
        CHECK(got > 0 && back[0] == 'a' + k && back[got - 1] == 'a' + k);
    }
    /* a discarded tmp leaves nothing behind */
    struct store_tmp t;
    CHECK_INT_EQ(store_tmp_create(s, &t), 0);
    uint8_t x[5000] = {1};
    CHECK_INT_EQ(store_tmp_write(&t, x, sizeof(x)), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s", t.path);
    store_tmp_discard(&t);
    CHECK(access(path, F_OK) != 0);
    store_close(s);
    rm_rf(dir);
}

static const char *tmp_base(void)
{
    const char *tmp = getenv("TMPDIR");
    return tmp && *tmp ? tmp : "/tmp";
}

static void test_page_cache(void)
{
    sizes_in(tmp_base(), false, 1, true);
    sizes_in(tmp_base(), false, 1, false);
}

static void test_direct(void)
{
    sizes_in(tmp_base(), true, 1, true);
    sizes_in(tmp_base(), true, 1, false);
}

/* A store in a new folder under base (dir receives its path); NULL when
 * that failed (a failed check). */
static struct store *temp_store(const char *base, char dir[4096])
{
    snprintf(dir, 4096, "%s/yy-store-XXXXXX", base);
    if (!mkdtemp(dir)) {
        CHECK_FAIL_("mkdtemp in %s: %s", base, strerror(errno));
        return NULL;
    }
    struct store *s = NULL;
    CHECK_INT_EQ(store_open(dir, &s), 0);
    return s;
}

/* On Linux's common file systems (ext4, xfs, btrfs, tmpfs) temp files are
 * unnamed by default. */
static void test_unnamed_by_default(void)
{
    char dir[4096];
    struct store *s = temp_store(tmp_base(), dir);
    if (!s)
        return;
    struct store_tmp t;
    CHECK_INT_EQ(store_tmp_create(s, &t), 0);
    CHECK(t.anon);
    CHECK_INT_EQ(tmp_names(dir), 0);
    store_tmp_discard(&t);
    store_close(s);
    rm_rf(dir);
}

static void test_direct_on_tmpfs(void)
{
    struct stat st;
    if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode) || access("/dev/shm", W_OK) != 0) {
        fprintf(stderr, "skip: no writable /dev/shm\n");
        return;
    }
    /* tmpfs takes O_DIRECT since Linux 6.6 and refuses it before (then the
     * writes go through the page cache): the bytes come back either way */
    sizes_in("/dev/shm", true, -1, true);
    sizes_in("/dev/shm", true, -1, false);
}

/* Commits n bytes of seed as sop_uid with store_commit_start; *next says
 * what was left to do, which is done. */
static void commit_start(struct store *s, const char *sop_uid, const char *keep, unsigned seed,
                         char rel[STORE_REL_MAX], enum store_sync *next)
{
    uint8_t data[50000];
    fill(data, sizeof(data), seed);
    struct store_tmp t;
    CHECK_INT_EQ(store_tmp_create(s, &t), 0);
    CHECK_INT_EQ(store_tmp_write(&t, data, 20000), 0);
    CHECK_INT_EQ(store_tmp_write(&t, data + 20000, sizeof(data) - 20000), 0);
    CHECK_INT_EQ(store_commit_start(s, &t, sop_uid, keep, rel, next), 0);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", store_dir(s), rel);
    CHECK(access(path, F_OK) == 0); /* in place before its sync, either way */
    if (*next == STORE_SYNC_FILE)
        CHECK_INT_EQ(store_commit_finish(s, &t, rel), 0);
    else
        CHECK_INT_EQ(store_sync_dir(s, rel), 0);
    store_tmp_discard(&t);
}

/* store_check_crc of the stored object rel. */
static int check_crc(struct store *s, const char *rel)
{
    int fd = -1, r = store_open_object(s, rel, &fd);
    if (r < 0)
        return r;
    r = store_check_crc(fd);
    close(fd);
    return r;
}

static void test_one_flush(void)
{
    char dir[4096];
    struct store *s = temp_store(tmp_base(), dir);
    if (!s)
        return;
    struct statfs sf;
    bool fs_ok = statfs(dir, &sf) == 0 && (sf.f_type == 0xEF53 || sf.f_type == 0x58465342);
    CHECK_INT_EQ(store_one_flush(s), fs_ok);
    if (!fs_ok) {
        fprintf(stderr, "skip: %s is neither ext4 nor XFS (two flushes there)\n", dir);
        store_close(s);
        rm_rf(dir);
        return;
    }
    char rel[STORE_REL_MAX], path[4200];
    enum store_sync next;
    commit_start(s, "1.2.3.9", NULL, 9, rel, &next);
    CHECK_INT_EQ(next, STORE_SYNC_FILE);
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    uint8_t data[50000], v[4] = {0};
    fill(data, sizeof(data), 9);
    CHECK_INT_EQ(getxattr(path, "user.yingyun.crc32", v, sizeof(v)), 4);
    uint32_t want = (uint32_t)crc32(0, data, sizeof(data));
    CHECK_INT_EQ((uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 |
                 (uint32_t)v[3] << 24, want);
    CHECK_INT_EQ(check_crc(s, rel), 0);
    /* a block that never reached the disk: zeros where bytes were */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    static const uint8_t zero[4096];
    CHECK_INT_EQ(pwrite(fd, zero, sizeof(zero), 8192), (ssize_t)sizeof(zero));
    close(fd);
    CHECK_INT_EQ(check_crc(s, rel), -EBADMSG);
    char aside[STORE_REL_MAX], apath[4200];
    CHECK_INT_EQ(store_set_aside(s, rel, aside), 0);
    CHECK(access(path, F_OK) != 0);
    CHECK(strncmp(aside, "damaged/", 8) == 0 && strchr(aside + 8, '/') == NULL);
    snprintf(apath, sizeof(apath), "%s/%s", dir, aside);
    struct stat st;
    CHECK(stat(apath, &st) == 0 && st.st_size == (off_t)sizeof(data)); /* kept, not deleted */
    CHECK_INT_EQ(store_set_aside(s, "objects/../index.db", aside), -EINVAL);
    /* the replacement of an object stored today goes to the r folder:
     * two flushes there (its temp file was made in the day's folder) */
    commit_start(s, "1.2.3.10", NULL, 10, rel, &next);
    char rel2[STORE_REL_MAX];
    commit_start(s, "1.2.3.10", rel, 11, rel2, &next);
    CHECK_INT_EQ(next, STORE_SYNC_DIR);
    CHECK(strstr(rel2, "r/") != NULL);
    CHECK_INT_EQ(check_crc(s, rel2), 0);
    /* two flushes: no CRC (the file is durable before its link) */
    store_set_one_flush(s, false);
    CHECK(!store_one_flush(s));
    commit_start(s, "1.2.3.11", NULL, 12, rel, &next);
    CHECK_INT_EQ(next, STORE_SYNC_DIR);
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    CHECK(getxattr(path, "user.yingyun.crc32", v, sizeof(v)) < 0 && errno == ENODATA);
    CHECK_INT_EQ(check_crc(s, rel), 0);
    /* one flush needs unnamed temp files */
    store_set_one_flush(s, true);
    store_set_tmpfile(s, false);
    CHECK(!store_one_flush(s));
    store_close(s);
    rm_rf(dir);
}

static void test_one_flush_off_on_tmpfs(void)
{
    struct stat st;
    if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode) || access("/dev/shm", W_OK) != 0) {
        fprintf(stderr, "skip: no writable /dev/shm\n");
        return;
    }
    char dir[4096];
    struct store *s = temp_store("/dev/shm", dir);
    if (!s)
        return;
    CHECK(!store_one_flush(s));
    store_close(s);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_page_cache);
    RUN(test_direct);
    RUN(test_unnamed_by_default);
    RUN(test_direct_on_tmpfs);
    RUN(test_one_flush);
    RUN(test_one_flush_off_on_tmpfs);
    return check_summary();
}
