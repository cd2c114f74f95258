/* fsyncw.c - the durable-write bound of ingest: for every file of a list,
 * write its bytes to a temp file in DIR, fdatasync it, close it and rename
 * it into place (optionally also fsync the directory), THREADS at a time.
 * This is the minimum work of a durable store of each instance, without
 * any parsing or index; STOW-RS figures are compared with it.
 *
 *   fsyncw DIR THREADS LISTFILE [--dirsync] [--direct]
 *
 * --direct writes the whole blocks of each file with O_DIRECT (from an
 * aligned copy) and the last partial block through the page cache (first,
 * with its write-back started at once), as Yingyun's store does; on some
 * disks that is the faster way to the same durable bytes, so the benchmark
 * takes the faster of the two as the bound.
 *
 * The input files are read before the clock starts (they must fit in RAM).
 * Prints JSON: files, bytes, elapsed_s, files_per_s, mb_per_s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ALIGN 4096

static char **data;
static size_t *lens;
static size_t n;
static const char *dir;
static int dirsync, direct;
static unsigned char **aligned; /* --direct: block-aligned copies */
static atomic_size_t next;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *m)
{
    fprintf(stderr, "fsyncw: %s: %s\n", m, strerror(errno));
    exit(2);
}

static void *worker(void *arg)
{
    (void)arg;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        die(dir);
    char tmp[4096], dst[4096];
    for (;;) {
        size_t i = atomic_fetch_add(&next, 1);
        if (i >= n)
            break;
        snprintf(tmp, sizeof(tmp), "%s/tmp-%zu", dir, i);
        snprintf(dst, sizeof(dst), "%s/obj-%zu", dir, i);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0),
                      0644);
        if (fd < 0)
            die(tmp);
        size_t off = 0;
        if (direct) {
            /* as the store does: the last partial block first, buffered,
             * its write-back started at once, then the whole blocks */
            size_t blocks = lens[i] & ~(size_t)(ALIGN - 1);
            if (blocks < lens[i]) {
                int fl = fcntl(fd, F_GETFL);
                if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
                    die("fcntl");
                for (size_t t = blocks; t < lens[i];) {
                    ssize_t w = pwrite(fd, data[i] + t, lens[i] - t, (off_t)t);
                    if (w < 0) {
                        if (errno == EINTR)
                            continue;
                        die("write");
                    }
                    t += (size_t)w;
                }
                (void)sync_file_range(fd, (off_t)blocks, (off_t)(lens[i] - blocks),
                                      SYNC_FILE_RANGE_WRITE);
                if (fcntl(fd, F_SETFL, fl) < 0)
                    die("fcntl");
            }
            while (off < blocks) {
                ssize_t w = pwrite(fd, aligned[i] + off, blocks - off, (off_t)off);
                if (w < 0) {
                    if (errno == EINTR)
                        continue;
                    die("direct write");
                }
                off += (size_t)w;
            }
            off = lens[i];
        }
        while (off < lens[i]) {
            ssize_t w = write(fd, data[i] + off, lens[i] - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                die("write");
            }
            off += (size_t)w;
        }
        if (fdatasync(fd) < 0)
            die("fdatasync");
        close(fd);
        if (rename(tmp, dst) < 0)
            die("rename");
        if (dirsync && fsync(dfd) < 0)
            die("fsync dir");
    }
    close(dfd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: fsyncw DIR THREADS LISTFILE [--dirsync] [--direct]\n");
        return 2;
    }
    dir = argv[1];
    int threads = atoi(argv[2]);
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--dirsync"))
            dirsync = 1;
        else if (!strcmp(argv[i], "--direct"))
            direct = 1;
        else {
            fprintf(stderr, "fsyncw: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    FILE *f = fopen(argv[3], "r");
    if (!f)
        die(argv[3]);
    size_t cap = 0;
    char *l = NULL;
    size_t lc = 0;
    ssize_t r;
    unsigned long long total = 0;
    while ((r = getline(&l, &lc, f)) >= 0) {
        while (r > 0 && (l[r - 1] == '\n' || l[r - 1] == '\r'))
            l[--r] = 0;
        if (!r)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            data = realloc(data, cap * sizeof(*data));
            lens = realloc(lens, cap * sizeof(*lens));
            if (!data || !lens)
                die("realloc");
        }
        int fd = open(l, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
            die(l);
        data[n] = malloc((size_t)st.st_size + 1);
        if (!data[n])
            die("malloc");
        size_t off = 0;
        while (off < (size_t)st.st_size) {
            ssize_t k = read(fd, data[n] + off, (size_t)st.st_size - off);
            if (k <= 0)
                die("read");
            off += (size_t)k;
        }
        close(fd);
        lens[n] = off;
        total += off;
        n++;
    }
    fclose(f);
    free(l);
    if (direct) {
        aligned = calloc(n ? n : 1, sizeof(*aligned));
        if (!aligned)
            die("calloc");
        for (size_t i = 0; i < n; i++) {
            if (posix_memalign((void **)&aligned[i], ALIGN, lens[i] ? lens[i] : 1))
                die("posix_memalign");
            memcpy(aligned[i], data[i], lens[i]);
        }
    }
    pthread_t th[256];
    if (threads < 1 || threads > 256)
        threads = 1;
    double t0 = now();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, worker, NULL))
            die("pthread_create");
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double el = now() - t0;
    printf("{\"files\": %zu, \"bytes\": %llu, \"threads\": %d, \"dirsync\": %s, "
           "\"direct\": %s, "
           "\"elapsed_s\": %.4f, \"files_per_s\": %.2f, \"mb_per_s\": %.3f}\n",
           n, total, threads, dirsync ? "true" : "false", direct ? "true" : "false", el,
           el > 0 ? (double)n / el : 0.0, el > 0 ? (double)total / el / 1e6 : 0.0);
    return 0;
}
