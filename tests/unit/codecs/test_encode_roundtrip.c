/*
 * test_encode_roundtrip.c - codec_encode then codec_decode on corpus images
 * and synthetic ones: lossless targets must give the input bytes back,
 * JPEG baseline must decode with PSNR > 40 dB (luma; chroma is 4:2:2). Then hostile input for every
 * decoder: truncated codestreams at many cut points, random bytes, flipped
 * bytes, wrong dimensions, small buffers. Nothing may crash (run it under
 * valgrind: `valgrind --error-exitcode=1 test_codec_roundtrip`).
 *
 * Also prints the decode speed of each lossless syntax on a 512x512 CT
 * frame ($YY_CODEC_BENCH_REPS repetitions, default 5).
 */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
#include "core/buf.h"
#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/json.h"
#include "dicom/layout.h"
#include "core/banned.h"

#define TS_J2K_LL "1.2.840.10008.1.2.4.90"
#define TS_HTJ2K_LL "1.2.840.10008.1.2.4.201"
#define TS_JLS "1.2.840.10008.1.2.4.80"
#define TS_RLE "1.2.840.10008.1.2.5"
#define TS_JPEG "1.2.840.10008.1.2.4.50"

static const char *const lossless_ts[] = {TS_J2K_LL, TS_HTJ2K_LL, TS_JLS, TS_RLE};

/* A canonical frame and its description. */
struct image {
    char name[128];
    struct codec_image img;
    char pi[20];
    uint8_t *px;
    size_t len;
    char ts[64];     /* for corpus codestreams: their syntax */
    uint8_t *stream; /* for corpus codestreams: the stored frame */
    size_t stream_len;
};

static void image_free(struct image *im)
{
    free(im->px);
    free(im->stream);
    memset(im, 0, sizeof(*im));
}

/* Reads frame idx of a corpus file; keeps the stored bytes and, for native
 * syntaxes, decodes them to the canonical frame. */
static int load(const char *rel, unsigned idx, struct image *im)
{
    char full[1024], err[256];
    memset(im, 0, sizeof(*im));
    snprintf(im->name, sizeof(im->name), "%s", rel);
    snprintf(full, sizeof(full), "%s/%s", check_corpus_dir(), rel);
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct dcm_file *f = NULL;
    int r = dcm_parse_fd(fd, NULL, &f, err, sizeof(err));
    if (r < 0) {
        close(fd);
        return r;
    }
    struct json_out o;
    json_out_init(&o);
    struct json_uris u = {"S", "SE", "I"};
    json_write_dataset(f, &u, NULL, &o);
    struct layout l;
    struct buf b;
    buf_init(&b, 0);
    unsigned first_bit = 0;
    struct file_bytes src = {fd, NULL, 0};
    r = layout_from_file(f, &src, o.bulk, o.n_bulk, &l);
    if (r == 0)
        r = frame_read(fd, &l, idx, &b, &first_bit);
    if (r == -ENOENT && !(l.flags & LAYOUT_ENCAPS) && l.spp == 3 && l.bits_alloc == 8) {
        /* native YBR_FULL_422: 2 bytes a pixel, not located by layout.c */
        uint64_t fb = (uint64_t)l.rows * l.cols * 2;
        r = fb * (idx + 1) <= l.pixel_len
                ? frame_read_range(fd, &l, l.pixel_offset + fb * idx, fb, &b)
                : -EBADMSG;
    }
    if (r == 0) {
        snprintf(im->pi, sizeof(im->pi), "%s", l.photometric);
        snprintf(im->ts, sizeof(im->ts), "%s", l.ts_uid);
        struct codec_image *c = &im->img;
        c->rows = l.rows;
        c->cols = l.cols;
        c->spp = l.spp;
        c->bits_alloc = l.bits_alloc;
        c->bits_stored = l.bits_stored;
        c->high_bit = l.high_bit;
        c->pixrep = l.pixrep;
        c->planar = l.planar;
        c->photometric = im->pi;
        c->big_endian = (l.flags & LAYOUT_BIG) != 0;
        im->stream_len = b.len;
        im->stream = (uint8_t *)buf_detach(&b, &im->stream_len);
        if (!(l.flags & LAYOUT_ENCAPS)) {
            size_t cap = codec_frame_size(c);
            im->px = malloc(cap);
            struct codec_out info = {0};
            r = im->px ? codec_decode(l.ts_uid, c, im->stream, im->stream_len, first_bit, im->px,
                                      cap, &info, err, sizeof(err))
                       : -ENOMEM;
            im->len = info.len;
            /* from here on the canonical frame is the input */
            c->planar = 0;
            c->big_endian = false;
        }
    }
    buf_release(&b);
    json_out_release(&o);
    dcm_file_free(f);
    close(fd);
    return r;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void synth(struct image *im, const char *name, unsigned rows, unsigned cols, unsigned spp,
                  unsigned ba, unsigned bs, unsigned pixrep, const char *pi)
{
    memset(im, 0, sizeof(*im));
    snprintf(im->name, sizeof(im->name), "%s", name);
    snprintf(im->pi, sizeof(im->pi), "%s", pi);
    struct codec_image *c = &im->img;
    c->rows = (uint16_t)rows;
    c->cols = (uint16_t)cols;
    c->spp = (uint16_t)spp;
    c->bits_alloc = (uint16_t)ba;
    c->bits_stored = (uint16_t)bs;
    c->high_bit = (uint16_t)(bs - 1);
    c->pixrep = (uint16_t)pixrep;
    c->photometric = im->pi;
    im->len = codec_frame_size(c);
    im->px = malloc(im->len ? im->len : 1);
    unsigned nb = ba / 8;
    for (size_t i = 0; i < im->len / nb; i++) {
        /* a smooth ramp with noise, valid for bs bits (sign-extended) */
        uint32_t v = (uint32_t)((i * 7 + (rnd() & 15)) & ((1ull << bs) - 1));
        if (pixrep && (v >> (bs - 1)) & 1)
            v |= ~(uint32_t)((1ull << bs) - 1);
        for (unsigned k = 0; k < nb; k++)
            im->px[i * nb + k] = (uint8_t)(v >> (8 * k));
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bench_reps(void)
{
    const char *e = getenv("YY_CODEC_BENCH_REPS");
    int n = e ? atoi(e) : 5;
    return n < 1 ? 1 : n;
}

/* Encodes im to ts and decodes it back; returns the codestream (caller
 * frees) and the description it must be decoded with. */
static uint8_t *encode_one(const struct image *im, const char *ts, unsigned quality,
                           struct codec_image *dimg, char *dpi, size_t *cs_len, int *rc)
{
    struct codec_encode_opts o = {quality};
    struct codec_out info;
    char err[256] = "";
    uint8_t *cs = NULL;
    *rc = codec_encode(ts, &im->img, im->px, im->len, &o, &cs, cs_len, &info, err, sizeof(err));
    if (*rc < 0)
        return NULL;
    *dimg = im->img;
    dimg->bits_stored = info.bits_stored;
    dimg->high_bit = (uint16_t)(info.bits_stored - 1);
    snprintf(dpi, 20, "%s", info.photometric);
    dimg->photometric = dpi;
    return cs;
}

static void roundtrip_lossless(const struct image *im, bool bench)
{
    for (size_t t = 0; t < YY_ARRAY_LEN(lossless_ts); t++) {
        const char *ts = lossless_ts[t];
        struct codec_image d;
        char dpi[20];
        size_t cs_len = 0;
        int rc;
        uint8_t *cs = encode_one(im, ts, 0, &d, dpi, &cs_len, &rc);
        bool want_notsup = im->img.bits_alloc > 16 && strcmp(ts, TS_RLE) != 0;
        if (want_notsup) {
            CHECK_INT_EQ(rc, -ENOTSUP);
            free(cs);
            continue;
        }
        if (rc < 0) {
            CHECK_FAIL_("%s -> %s: encode %d", im->name, ts, rc);
            continue;
        }
        size_t cap = codec_frame_size(&d);
        uint8_t *out = malloc(cap);
        struct codec_out info;
        char err[256] = "";
        int reps = bench ? bench_reps() : 1;
        double dt = 1e9;
        int r = 0;
        for (int k = 0; k < reps && r == 0; k++) { /* best of reps: the machine is shared */
            double t0 = now_s();
            r = codec_decode(ts, &d, cs, cs_len, 0, out, cap, &info, err, sizeof(err));
            if (now_s() - t0 < dt)
                dt = now_s() - t0;
        }
        if (r < 0) {
            CHECK_FAIL_("%s -> %s: decode %d %s", im->name, ts, r, err);
        } else if (info.len != im->len || memcmp(out, im->px, im->len) != 0) {
            CHECK_FAIL_("%s -> %s: round trip differs (%zu vs %zu bytes)", im->name, ts, info.len,
                        im->len);
        } else {
            check_n_pass++;
        }
        if (bench)
            fprintf(stderr, "bench %-40s %-24s %8zu -> %8zu bytes  decode %7.1f MB/s\n", im->name,
                    ts, im->len, cs_len, im->len / 1e6 / dt);
        free(out);
        free(cs);
    }
}

/* YCbCr (JFIF full range) of one RGB pixel. */
static void to_ycc(const uint8_t *rgb, double *y)
{
    double r = rgb[0], g = rgb[1], b = rgb[2];
    y[0] = 0.299 * r + 0.587 * g + 0.114 * b;
    y[1] = -0.168736 * r - 0.331264 * g + 0.5 * b + 128;
    y[2] = 0.5 * r - 0.418688 * g - 0.081312 * b + 128;
}

/* PSNR of JPEG baseline at the default quality, compared in the colour
 * space of the decoder's output (YBR_FULL for colour). */
static void roundtrip_jpeg(const struct image *im)
{
    struct codec_image d;
    char dpi[20];
    size_t cs_len = 0;
    int rc;
    uint8_t *cs = encode_one(im, TS_JPEG, 0, &d, dpi, &cs_len, &rc);
    if (im->img.bits_alloc != 8) {
        CHECK_INT_EQ(rc, -ENOTSUP);
        free(cs);
        return;
    }
    if (rc < 0) {
        CHECK_FAIL_("%s -> JPEG: encode %d", im->name, rc);
        return;
    }
    if (im->img.spp == 3)
        CHECK_STR_EQ(dpi, "YBR_FULL_422");
    size_t cap = codec_frame_size(&d);
    uint8_t *out = malloc(cap);
    struct codec_out info;
    char err[256] = "";
    int r = codec_decode(TS_JPEG, &d, cs, cs_len, 0, out, cap, &info, err, sizeof(err));
    if (r < 0) {
        CHECK_FAIL_("%s -> JPEG: decode %d %s", im->name, r, err);
        free(out);
        free(cs);
        return;
    }
    size_t npix = (size_t)im->img.rows * im->img.cols;
    CHECK_INT_EQ(info.len, npix * im->img.spp);
    bool rgb = im->img.spp == 3 && strcmp(im->pi, "RGB") == 0;
    bool sub = im->img.spp == 3 && im->len < npix * 3; /* stored YBR_FULL_422 */
    if (im->img.spp == 3)
        CHECK_STR_EQ(info.photometric, "YBR_FULL");
    /* squared error per channel: luma (or grey) and chroma */
    double se[3] = {0, 0, 0};
    for (size_t p = 0; p < npix && info.len == npix * im->img.spp; p++) {
        double ref[3], got[3];
        for (unsigned c = 0; c < im->img.spp; c++) {
            got[c] = out[p * im->img.spp + c];
            if (sub) {
                const uint8_t *pair = im->px + (p / 2) * 4;
                ref[c] = c == 0 ? pair[p & 1] : pair[1 + c];
            } else {
                ref[c] = im->px[p * im->img.spp + c];
            }
        }
        if (rgb)
            to_ycc(im->px + p * 3, ref);
        for (unsigned c = 0; c < im->img.spp; c++)
            se[c] += (ref[c] - got[c]) * (ref[c] - got[c]);
    }
    double psnr[3], all = 0;
    for (unsigned c = 0; c < im->img.spp; c++) {
        double mse = se[c] / (double)npix;
        psnr[c] = mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : 99;
        all += se[c];
    }
    all /= (double)npix * im->img.spp;
    all = all > 0 ? 10 * log10(255.0 * 255.0 / all) : 99;
    /* The declared YBR_FULL_422 halves the chroma: on small, colourful
     * images that alone limits the all-channel PSNR (35.8 dB on the 80x60
     * ExplVR_BigEnd image), so the 40 dB bar is for luma / grey. */
    fprintf(stderr, "JPEG %-50s %7zu -> %7zu bytes  PSNR luma %.1f dB, all channels %.1f dB\n",
            im->name, im->len, cs_len, psnr[0], all);
    if (psnr[0] > 40)
        check_n_pass++;
    else
        CHECK_FAIL_("%s: JPEG PSNR %.1f dB <= 40", im->name, psnr[0]);
    free(out);
    free(cs);
}

/* ---- hostile input ---- */

struct sample {
    char name[128];
    char ts[64];
    struct codec_image img;
    char pi[20];
    uint8_t *cs;
    size_t len;
};

static struct sample samples[24];
static size_t n_samples;

static void add_sample(const char *name, const char *ts, const struct codec_image *img,
                       const uint8_t *cs, size_t len)
{
    if (n_samples == YY_ARRAY_LEN(samples) || !cs)
        return;
    struct sample *s = &samples[n_samples++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->ts, sizeof(s->ts), "%s", ts);
    s->img = *img;
    snprintf(s->pi, sizeof(s->pi), "%s", img->photometric ? img->photometric : "");
    s->img.photometric = s->pi;
    s->cs = malloc(len);
    memcpy(s->cs, cs, len);
    s->len = len;
}

/* Decodes data; the result must be an error, or (when allowed) a frame of
 * the right size. Never writes past the buffer (valgrind checks). */
static int try_decode(const struct sample *s, const struct codec_image *img, const uint8_t *data,
                      size_t len)
{
    size_t cap = codec_frame_size(img);
    uint8_t *out = malloc(cap ? cap : 1);
    struct codec_out info;
    char err[256];
    int r = codec_decode(s->ts, img, data, len, 0, out, cap, &info, err, sizeof(err));
    if (r == 0 && (info.len == 0 || info.len > cap))
        CHECK_FAIL_("%s: success with output length %zu (cap %zu)", s->name, info.len, cap);
    free(out);
    return r;
}

static void hostile_truncate(const struct sample *s)
{
    size_t cuts[64], n = 0;
    for (size_t c = 0; c < 24 && c < s->len; c++)
        cuts[n++] = c;
    for (size_t k = 1; k < 36; k++)
        cuts[n++] = s->len * k / 36;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *copy = malloc(cuts[i] ? cuts[i] : 1); /* exact size: valgrind sees overreads */
        memcpy(copy, s->cs, cuts[i]);
        int r = try_decode(s, &s->img, copy, cuts[i]);
        /* the last bytes may be padding or an end marker */
        if (r == 0 && cuts[i] + 8 < s->len) {
            bad++;
            fprintf(stderr, "%s [%s]: cut at %zu of %zu decoded without error\n", s->name, s->ts,
                    cuts[i], s->len);
        }
        free(copy);
    }
    CHECK_INT_EQ(bad, 0);
}

static void hostile_random(const struct sample *s)
{
    for (int k = 0; k < 12; k++) {
        size_t len = rnd() % 4096;
        uint8_t *b = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            b[i] = (uint8_t)rnd();
        /* keep a plausible start so the parsers get further than byte 0 */
        if (k & 1)
            memcpy(b, s->cs, len < s->len ? (len < 64 ? len : 64) : (s->len < 64 ? s->len : 64));
        try_decode(s, &s->img, b, len);
        free(b);
    }
    for (int k = 0; k < 24; k++) {
        uint8_t *b = malloc(s->len);
        memcpy(b, s->cs, s->len);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) {
            /* half of the flips in the first 256 bytes (the headers) */
            size_t span = (k & 1) && s->len > 256 ? 256 : s->len;
            b[rnd() % span] ^= (uint8_t)(1u << (rnd() % 8));
        }
        try_decode(s, &s->img, b, s->len);
        free(b);
    }
    check_n_pass++;
}

static void hostile_dims(const struct sample *s)
{
    struct codec_image v[4];
    for (int k = 0; k < 4; k++)
        v[k] = s->img;
    v[0].rows++;
    v[1].cols = (uint16_t)(v[1].cols > 1 ? v[1].cols - 1 : 2);
    v[2].spp = s->img.spp == 1 ? 3 : 1;
    v[3].rows = (uint16_t)(v[3].rows > 1 ? v[3].rows - 1 : 2);
    for (int k = 0; k < 4; k++) {
        int r = try_decode(s, &v[k], s->cs, s->len);
        if (r == 0)
            CHECK_FAIL_("%s [%s]: wrong dimensions (variant %d) decoded", s->name, s->ts, k);
        else
            check_n_pass++;
    }
    /* too small an output buffer */
    size_t cap = codec_frame_size(&s->img);
    uint8_t *out = malloc(cap);
    char err[128];
    CHECK_INT_EQ(
        codec_decode(s->ts, &s->img, s->cs, s->len, 0, out, cap - 1, NULL, err, sizeof(err)),
        -E2BIG);
    /* and the real thing still works */
    CHECK_INT_EQ(codec_decode(s->ts, &s->img, s->cs, s->len, 0, out, cap, NULL, err, sizeof(err)),
                 0);
    free(out);
}

static void test_hostile(void)
{
    for (size_t i = 0; i < n_samples; i++) {
        hostile_truncate(&samples[i]);
        hostile_random(&samples[i]);
        hostile_dims(&samples[i]);
    }
    /* images that cannot be handled, without allocating */
    struct codec_image huge = {65535, 65535, 3, 16, 16, 15, 0, 0, "RGB", false, false};
    uint8_t small[16] = {0};
    struct codec_out info;
    char err[128];
    CHECK_INT_EQ(codec_frame_size(&huge), 0);
    CHECK_INT_EQ(codec_decode(TS_J2K_LL, &huge, small, sizeof(small), 0, small, sizeof(small),
                              &info, err, sizeof(err)),
                 -E2BIG);
    struct codec_image bad = {16, 16, 2, 8, 8, 7, 0, 0, "RGB", false, false};
    CHECK_INT_EQ(codec_decode(TS_RLE, &bad, small, sizeof(small), 0, small, sizeof(small), &info,
                              err, sizeof(err)),
                 -ENOTSUP);
    struct codec_image ok = {2, 2, 1, 8, 8, 7, 0, 0, "MONOCHROME2", false, false};
    CHECK_INT_EQ(codec_decode("1.2.3.4", &ok, small, sizeof(small), 0, small, sizeof(small), &info,
                              err, sizeof(err)),
                 -ENOTSUP);
    CHECK_INT_EQ(
        codec_decode(TS_JPEG, &ok, NULL, 0, 0, small, sizeof(small), &info, err, sizeof(err)),
        -EBADMSG);
    CHECK_INT_EQ(codec_decode("1.2.840.10008.1.2.1", &ok, small, 3, 0, small, sizeof(small), &info,
                              err, sizeof(err)),
                 -EBADMSG);
    uint8_t *cs = NULL;
    size_t cs_len = 0;
    CHECK_INT_EQ(codec_encode(TS_RLE, &ok, small, 3, NULL, &cs, &cs_len, &info, err, sizeof(err)),
                 -EINVAL);
    CHECK_INT_EQ(codec_encode("1.2.840.10008.1.2.4.91", &ok, small, 4, NULL, &cs, &cs_len, &info,
                              err, sizeof(err)),
                 -ENOTSUP);
    CHECK(cs == NULL);
    for (size_t i = 0; i < n_samples; i++)
        free(samples[i].cs);
    n_samples = 0;
}

/* ---- the test images ---- */

static const struct {
    const char *path;
    unsigned frame;
} corpus_images[] = {
    {"ts/explicit_le/orthanc__KarstenHilbertRF.dcm", 0},                   /* 8-bit grey */
    {"series/ct_ge_hispeed_gantry_tilt_28/01.dcm", 0},                     /* 16-bit signed CT */
    {"ts/explicit_le/pydicom-data__MR-SIEMENS-DICOM-WithOverlays.dcm", 0}, /* 12 in 16 */
    {"ts/explicit_le/dcm_qa_12bit__12bitSigned_0x0F0F.dcm", 0},            /* garbage high bits */
    {"ts/explicit_be/pydicom-data__emri_small_big_endian.dcm", 3},         /* big endian 12-bit */
    {"ts/explicit_le/orthanc__TS-1.2.840.10008.1.2.1_US-RGB-8-esopecho.dcm", 0}, /* RGB */
    {"ts/explicit_be/pydicom__ExplVR_BigEnd.dcm", 0}, /* RGB, planar, BE */
    {"ts/explicit_le/orthanc__Issue19.dcm", 0},       /* YBR_FULL */
    {"ts/explicit_le/dcm4che__YBR_422.dcm", 0},       /* YBR_FULL_422 native */
    {"ts/implicit_le/pydicom__rtdose.dcm", 2},        /* 32-bit */
};

/* Corpus codestreams of syntaxes we do not encode, for the hostile tests. */
static const char *const corpus_streams[] = {
    "ts/jpeg_lossless_sv1/pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm",
    "ts/jpeg_lossless_p14/pylibjpeg-data__JPEGLossless_1s_1f_u_16_12.dcm",
    "ts/jpeg_extended/pylibjpeg-data__JPEGExtended_1s_1f_u_16_12.dcm",
    "ts/jpeg_baseline/orthanc__TS-1.2.840.10008.1.2.4.50_ATL-US.dcm",
    "ts/jpegls_near_lossless/pylibjpeg-data__CT1_JLSN.dcm",
    "ts/j2k/pydicom-data__US1_J2KI.dcm",
    "ts/htj2k/pydicom-data__HTJ2K_08_RGB.dcm",
    "ts/jpegxl/dcm4che__will-jxl.dcm",
    "ts/deflated_image_frame/pydicom-data__liver_deflate.dcm",
    "ts/rle/fo-dicom__D_CLUNIE_CT1_RLE_FRAGS.dcm",
};

static void test_corpus_roundtrip(void)
{
    for (size_t i = 0; i < YY_ARRAY_LEN(corpus_images); i++) {
        struct image im;
        int r = load(corpus_images[i].path, corpus_images[i].frame, &im);
        if (r < 0 || !im.px) {
            CHECK_FAIL_("load %s: %d", corpus_images[i].path, r);
            image_free(&im);
            continue;
        }
        bool ybr422 = im.len < codec_frame_size(&im.img);
        bool ct = strstr(im.name, "ct_ge_hispeed") != NULL;
        if (ybr422) {
            /* stored YBR_FULL_422 is only taken by JPEG */
            uint8_t *cs = NULL;
            size_t cs_len;
            CHECK_INT_EQ(
                codec_encode(TS_RLE, &im.img, im.px, im.len, NULL, &cs, &cs_len, NULL, NULL, 0),
                -ENOTSUP);
        } else {
            roundtrip_lossless(&im, ct);
        }
        roundtrip_jpeg(&im);
        /* hostile-test material: encodings of the CT and of the RGB image */
        if (ct || strstr(im.name, "esopecho")) {
            for (size_t t = 0; t < YY_ARRAY_LEN(lossless_ts); t++) {
                struct codec_image d;
                char dpi[20], name[160];
                size_t cs_len;
                int rc;
                uint8_t *cs = encode_one(&im, lossless_ts[t], 0, &d, dpi, &cs_len, &rc);
                snprintf(name, sizeof(name), "%s as %s", im.name, lossless_ts[t]);
                add_sample(name, lossless_ts[t], &d, cs, cs_len);
                free(cs);
            }
        }
        if (strstr(im.name, "KarstenHilbert") || strstr(im.name, "esopecho")) {
            struct codec_image d;
            char dpi[20], name[160];
            size_t cs_len;
            int rc;
            uint8_t *cs = encode_one(&im, TS_JPEG, 0, &d, dpi, &cs_len, &rc);
            snprintf(name, sizeof(name), "%s as JPEG", im.name);
            add_sample(name, TS_JPEG, &d, cs, cs_len);
            free(cs);
        }
        image_free(&im);
    }
    for (size_t i = 0; i < YY_ARRAY_LEN(corpus_streams); i++) {
        struct image im;
        int r = load(corpus_streams[i], 0, &im);
        if (r < 0) {
            CHECK_FAIL_("load %s: %d", corpus_streams[i], r);
        } else {
            add_sample(corpus_streams[i], im.ts, &im.img, im.stream, im.stream_len);
            check_n_pass++;
        }
        image_free(&im);
    }
}

/* Decode speed of corpus CT frames in other syntaxes (best of reps). */
static void test_bench_corpus_ct(void)
{
    static const char *const files[] = {
        "ts/j2k_lossless/pylibjpeg-data__TOSHIBA_J2K_SIZ1_PixRep0.dcm",
        "ts/j2k/pylibjpeg-data__MAROTECH_CT_JP2Lossy.dcm",
        "ts/jpegls_near_lossless/pylibjpeg-data__CT1_JLSN.dcm",
        "ts/rle/fo-dicom__D_CLUNIE_CT1_RLE_FRAGS.dcm",
        "ts/jpeg_lossless_sv1/orthanc__TS-1.2.840.10008.1.2.4.70_CT-MONO2-16-chest.dcm",
    };
    for (size_t i = 0; i < YY_ARRAY_LEN(files); i++) {
        struct image im;
        if (load(files[i], 0, &im) < 0) {
            CHECK_FAIL_("load %s", files[i]);
            image_free(&im);
            continue;
        }
        size_t cap = codec_frame_size(&im.img);
        uint8_t *out = malloc(cap);
        struct codec_out info;
        char err[256];
        double dt = 1e9;
        int r = 0;
        for (int k = 0; k < bench_reps() && r == 0; k++) {
            double t0 = now_s();
            r = codec_decode(im.ts, &im.img, im.stream, im.stream_len, 0, out, cap, &info, err,
                             sizeof(err));
            if (now_s() - t0 < dt)
                dt = now_s() - t0;
        }
        CHECK_INT_EQ(r, 0);
        if (r == 0)
            fprintf(stderr, "bench %-40.40s %-24s %ux%u decode %7.1f MB/s\n", files[i] + 3, im.ts,
                    im.img.cols, im.img.rows, info.len / 1e6 / dt);
        free(out);
        image_free(&im);
    }
}

static void test_synthetic(void)
{
    static const struct {
        unsigned rows, cols, spp, ba, bs, pixrep;
        const char *pi;
    } cases[] = {
        {1, 1, 1, 8, 8, 0, "MONOCHROME2"},     {1, 1, 3, 8, 8, 0, "RGB"},
        {3, 5, 1, 16, 16, 1, "MONOCHROME2"},   {7, 1, 1, 16, 10, 0, "MONOCHROME2"},
        {1, 300, 3, 8, 8, 0, "RGB"},           {33, 65, 1, 16, 15, 1, "MONOCHROME2"},
        {17, 9, 3, 16, 12, 0, "RGB"},          {64, 64, 1, 8, 6, 0, "MONOCHROME1"},
        {9, 260, 1, 16, 16, 0, "MONOCHROME2"}, {5, 6, 3, 8, 8, 0, "YBR_FULL"},
    };
    for (size_t i = 0; i < YY_ARRAY_LEN(cases); i++) {
        struct image im;
        char name[64];
        snprintf(name, sizeof(name), "synthetic %ux%u x%u %u/%u%s", cases[i].rows, cases[i].cols,
                 cases[i].spp, cases[i].ba, cases[i].bs, cases[i].pixrep ? " signed" : "");
        synth(&im, name, cases[i].rows, cases[i].cols, cases[i].spp, cases[i].ba, cases[i].bs,
              cases[i].pixrep, cases[i].pi);
        roundtrip_lossless(&im, false);
        image_free(&im);
    }
}

int main(void)
{
    RUN(test_synthetic);
    RUN(test_corpus_roundtrip);
    RUN(test_hostile);
    RUN(test_bench_corpus_ct);
    return check_summary();
}
