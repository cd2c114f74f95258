/*
 * test_decode_corpus.c - decodes every frame listed in the shared corpus's
 * REFERENCE.tsv through codec_decode() and compares the SHA-256 of the
 * canonical frame (and min/max) with the reference decode.
 *
 * Frames are located as tools/yy-dump.c does for `frame` (dcm_parse_fd,
 * json_write_dataset, layout_from_file, frame_read). Lossy syntaxes may
 * instead match the reference decoder's bytes within +-1 per sample: those
 * bytes are written at test time by make_lossy_refs.sh (Debian's gdcmconv,
 * opj_decompress, djxl) into a temporary directory; see docs/codecs.md.
 *
 * Prints one line per failing frame, a per-syntax table on stderr, and
 * "N passed, N failed" (one check per frame).
 */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
#include "core/buf.h"
#include "core/sha256.h"
#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/json.h"
#include "dicom/layout.h"
#include "core/banned.h"

struct row {
    char path[512];
    unsigned frame;
    char sha[65];
    char min[64], max[64];
};

/* A parsed file, kept while its frames are tested. */
struct file {
    char path[512];
    int fd;
    struct dcm_file *f;
    struct json_out o;
    struct layout l;
    int parse_err;
};

struct stat_ts {
    char ts[64];
    unsigned pass, fail, tol;
    double mb, sec;
};

static struct stat_ts stats[32];
static size_t n_stats;
static char refdir[256]; /* reference frames from make_lossy_refs.sh, "" if none */

static struct stat_ts *stat_for(const char *ts)
{
    for (size_t i = 0; i < n_stats; i++)
        if (strcmp(stats[i].ts, ts) == 0)
            return &stats[i];
    if (n_stats == YY_ARRAY_LEN(stats))
        return &stats[n_stats - 1];
    snprintf(stats[n_stats].ts, sizeof(stats[n_stats].ts), "%s", ts);
    return &stats[n_stats++];
}

static bool is_lossy(const char *ts)
{
    static const char *const lossy[] = {
        "1.2.840.10008.1.2.4.50",  "1.2.840.10008.1.2.4.51",  "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",  "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.110",
        "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",
    };
    for (size_t i = 0; i < YY_ARRAY_LEN(lossy); i++)
        if (strcmp(ts, lossy[i]) == 0)
            return true;
    return false;
}

static void file_close(struct file *fl)
{
    if (fl->f) {
        json_out_release(&fl->o);
        dcm_file_free(fl->f);
    }
    if (fl->fd >= 0)
        close(fl->fd);
    memset(fl, 0, sizeof(*fl));
    fl->fd = -1;
}

static int file_open(struct file *fl, const char *corpus, const char *rel)
{
    char full[1024];
    file_close(fl);
    snprintf(fl->path, sizeof(fl->path), "%s", rel);
    snprintf(full, sizeof(full), "%s/%s", corpus, rel);
    fl->fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fl->fd < 0)
        return fl->parse_err = -errno;
    char err[256];
    int r = dcm_parse_fd(fl->fd, NULL, &fl->f, err, sizeof(err));
    if (r < 0) {
        fl->f = NULL;
        return fl->parse_err = r;
    }
    json_out_init(&fl->o);
    struct json_uris u = {"S", "SE", "I"};
    json_write_dataset(fl->f, &u, NULL, &fl->o);
    struct file_bytes src = {fl->fd, NULL, 0};
    r = layout_from_file(fl->f, &src, fl->o.bulk, fl->o.n_bulk, &fl->l);
    return fl->parse_err = r < 0 ? r : 0;
}

static void image_from_layout(const struct layout *l, struct codec_image *img)
{
    memset(img, 0, sizeof(*img));
    img->rows = l->rows;
    img->cols = l->cols;
    img->spp = l->spp;
    img->bits_alloc = l->bits_alloc;
    img->bits_stored = l->bits_stored;
    img->high_bit = l->high_bit;
    img->pixrep = l->pixrep;
    img->planar = l->planar;
    img->photometric = l->photometric;
    img->big_endian = (l->flags & LAYOUT_BIG) != 0;
    img->float_data =
        l->pixel_tag == TAG_FLOAT_PIXEL_DATA || l->pixel_tag == TAG_DOUBLE_FLOAT_PIXEL_DATA;
}

/* The frame's stored bytes. Native YBR_FULL_422 frames (2 bytes a pixel)
 * are not located by layout.c (it assumes 3), so they are read here. */
static int read_frame(struct file *fl, unsigned idx, struct buf *b, unsigned *first_bit)
{
    const struct layout *l = &fl->l;
    int r = frame_read(fl->fd, l, idx, b, first_bit);
    bool ybr422 = l->spp == 3 && l->bits_alloc == 8 &&
                  (strcmp(l->photometric, "YBR_FULL_422") == 0 ||
                   strcmp(l->photometric, "YBR_PARTIAL_422") == 0);
    if (r == -ENOENT && ybr422 && (l->flags & LAYOUT_PIXELS) && !(l->flags & LAYOUT_ENCAPS)) {
        uint64_t fb = (uint64_t)l->rows * l->cols * 2;
        if ((idx + 1) * fb > l->pixel_len)
            return -EBADMSG;
        *first_bit = 0;
        r = frame_read_range(fl->fd, l, l->pixel_offset + idx * fb, fb, b);
    }
    return r;
}

/* min/max as REFERENCE.tsv computes them: masked to Bits Stored and
 * sign-extended when signed; float data raw. */
static void minmax(const struct codec_image *img, const struct codec_out *info, const uint8_t *p,
                   char *mn, char *mx, size_t cap)
{
    if (img->float_data) {
        double lo = 0, hi = 0;
        size_t n = info->len / (img->bits_alloc / 8);
        for (size_t i = 0; i < n; i++) {
            double v;
            if (img->bits_alloc == 32) {
                float f;
                memcpy(&f, p + i * 4, 4);
                v = f;
            } else {
                memcpy(&v, p + i * 8, 8);
            }
            if (i == 0 || v < lo)
                lo = v;
            if (i == 0 || v > hi)
                hi = v;
        }
        snprintf(mn, cap, "%.17g", lo);
        snprintf(mx, cap, "%.17g", hi);
        return;
    }
    unsigned nb = img->bits_alloc <= 8 ? 1 : img->bits_alloc / 8;
    unsigned bs = img->bits_stored ? img->bits_stored : img->bits_alloc;
    if (bs > img->bits_alloc)
        bs = img->bits_alloc;
    size_t n = info->len / nb;
    long long lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = 0;
        for (unsigned k = 0; k < nb; k++)
            u |= (uint64_t)p[i * nb + k] << (8 * k);
        if (bs < 64)
            u &= ((uint64_t)1 << bs) - 1;
        long long v = (long long)u;
        if (img->pixrep && bs < 64 && (u >> (bs - 1)) & 1)
            v = (long long)u - ((long long)1 << bs);
        if (i == 0 || v < lo)
            lo = v;
        if (i == 0 || v > hi)
            hi = v;
    }
    snprintf(mn, cap, "%lld", lo);
    snprintf(mx, cap, "%lld", hi);
}

static bool same_number(const char *a, const char *b, double tol)
{
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (ea == a || eb == b)
        return false;
    double d = x - y;
    return d <= tol && d >= -tol;
}

/* Compares with the reference decoder's bytes (from make_lossy_refs.sh):
 * returns the largest sample difference, -1 if there is no reference. */
static long long max_diff_vs_ref(const struct row *rw, const struct codec_image *img,
                                 const uint8_t *p, size_t len)
{
    if (!refdir[0])
        return -1;
    char name[1024], flat[512];
    snprintf(flat, sizeof(flat), "%s", rw->path);
    for (char *c = flat; *c; c++)
        if (*c == '/')
            *c = '_';
    snprintf(name, sizeof(name), "%s/%s.%u.raw", refdir, flat, rw->frame);
    FILE *f = fopen(name, "rb");
    if (!f)
        return -1;
    uint8_t *ref = malloc(len + 1);
    size_t got = ref ? fread(ref, 1, len + 1, f) : 0;
    fclose(f);
    if (got != len) {
        free(ref);
        return -1;
    }
    unsigned nb = img->bits_alloc <= 8 ? 1 : img->bits_alloc / 8;
    long long worst = 0;
    for (size_t i = 0; i + nb <= len; i += nb) {
        long long a = 0, b = 0;
        for (unsigned k = 0; k < nb; k++) {
            a |= (long long)p[i + k] << (8 * k);
            b |= (long long)ref[i + k] << (8 * k);
        }
        long long d = a > b ? a - b : b - a;
        if (d > worst)
            worst = d;
    }
    free(ref);
    return worst;
}

static int parse_row(char *line, struct row *rw)
{
    char *f[6];
    int n = 0;
    char *s = line;
    while (n < 6) {
        f[n++] = s;
        char *t = strchr(s, '\t');
        if (!t)
            break;
        *t = 0;
        s = t + 1;
    }
    if (n < 6)
        return -1;
    snprintf(rw->path, sizeof(rw->path), "%s", f[0]);
    rw->frame = (unsigned)strtoul(f[1], NULL, 10);
    snprintf(rw->sha, sizeof(rw->sha), "%s", f[2]);
    snprintf(rw->min, sizeof(rw->min), "%s", f[3]);
    snprintf(rw->max, sizeof(rw->max), "%s", f[4]);
    return strlen(rw->sha) == 64 ? 0 : -1;
}

/* Runs make_lossy_refs.sh CORPUS DIR, when the script and tools exist. */
static void make_refs(const char *corpus)
{
    const char *src = getenv("YY_SOURCE_ROOT");
    if (!src || getenv("YY_NO_LOSSY_REFS"))
        return;
    char script[1024], tmpl[] = "/tmp/yy-lossy-refs-XXXXXX";
    snprintf(script, sizeof(script), "%s/tests/unit/codecs/make_lossy_refs.sh", src);
    if (access(script, R_OK) != 0 || !mkdtemp(tmpl))
        return;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' '%s' >&2", script, corpus, tmpl);
    if (system(cmd) == 0)
        snprintf(refdir, sizeof(refdir), "%s", tmpl);
    else
        fprintf(stderr, "make_lossy_refs.sh failed: lossy frames must match exactly\n");
}

static void remove_refs(void)
{
    if (!refdir[0])
        return;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", refdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", refdir);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_corpus(void)
{
    const char *corpus = check_corpus_dir();
    char name[1024];
    snprintf(name, sizeof(name), "%s/REFERENCE.tsv", corpus);
    FILE *tsv = fopen(name, "r");
    if (!tsv) {
        CHECK_FAIL_("cannot open %s", name);
        return;
    }
    make_refs(corpus);
    struct file fl;
    memset(&fl, 0, sizeof(fl));
    fl.fd = -1;
    char line[2048];
    bool header = true;
    struct buf b;
    buf_init(&b, 0);
    uint8_t *out = NULL;
    size_t out_cap = 0;
    while (fgets(line, sizeof(line), tsv)) {
        line[strcspn(line, "\r\n")] = 0;
        if (header) {
            header = false;
            continue;
        }
        struct row rw;
        if (parse_row(line, &rw) < 0)
            continue;
        if (strcmp(fl.path, rw.path) != 0)
            file_open(&fl, corpus, rw.path);
        if (fl.parse_err < 0) {
            CHECK_FAIL_("%s frame %u: open/parse %d", rw.path, rw.frame, fl.parse_err);
            stat_for("(unparsed)")->fail++;
            continue;
        }
        struct stat_ts *st = stat_for(fl.l.ts_uid);
        struct codec_image img;
        image_from_layout(&fl.l, &img);
        buf_reset(&b);
        unsigned first_bit = 0;
        int r = read_frame(&fl, rw.frame, &b, &first_bit);
        if (r < 0) {
            CHECK_FAIL_("%s frame %u: frame_read %d", rw.path, rw.frame, r);
            st->fail++;
            continue;
        }
        size_t need = codec_frame_size(&img);
        if (need > out_cap) {
            free(out);
            out = malloc(need);
            out_cap = out ? need : 0;
        }
        struct codec_out info;
        char err[256] = "";
        double t0 = now_s();
        r = codec_decode(fl.l.ts_uid, &img, (const uint8_t *)b.data, b.len, first_bit, out, out_cap,
                         &info, err, sizeof(err));
        st->sec += now_s() - t0;
        if (r < 0) {
            CHECK_FAIL_("%s frame %u [%s]: decode %d %s", rw.path, rw.frame, fl.l.ts_uid, r, err);
            st->fail++;
            continue;
        }
        st->mb += info.len / 1e6;
        char hex[65], mn[64], mx[64];
        sha256_hex(out, info.len, hex);
        minmax(&img, &info, out, mn, mx, sizeof(mn));
        double tol = img.float_data ? 1e-6 : 0;
        bool mm_ok = same_number(mn, rw.min, tol) && same_number(mx, rw.max, tol);
        if (strcmp(hex, rw.sha) == 0 && mm_ok) {
            check_n_pass++;
            st->pass++;
            continue;
        }
        long long d = is_lossy(fl.l.ts_uid) ? max_diff_vs_ref(&rw, &img, out, info.len) : -1;
        if (d >= 0 && d <= 1) {
            fprintf(stderr, "tolerance: %s frame %u [%s] max diff %lld vs reference decoder\n",
                    rw.path, rw.frame, fl.l.ts_uid, d);
            check_n_pass++;
            st->pass++;
            st->tol++;
            continue;
        }
        CHECK_FAIL_("%s frame %u [%s]: sha %.12s != %.12s, min/max %s/%s vs %s/%s%s", rw.path,
                    rw.frame, fl.l.ts_uid, hex, rw.sha, mn, mx, rw.min, rw.max,
                    d > 1 ? " (differs from reference decoder by more than 1)" : "");
        st->fail++;
    }
    fclose(tsv);
    free(out);
    buf_release(&b);
    file_close(&fl);
    remove_refs();
    fprintf(stderr, "%-26s %6s %6s %6s %10s\n", "transfer syntax", "pass", "fail", "tol", "MB/s");
    for (size_t i = 0; i < n_stats; i++)
        fprintf(stderr, "%-26s %6u %6u %6u %10.1f\n", stats[i].ts, stats[i].pass, stats[i].fail,
                stats[i].tol, stats[i].sec > 0 ? stats[i].mb / stats[i].sec : 0.0);
}

int main(void)
{
    RUN(test_corpus);
    return check_summary();
}
