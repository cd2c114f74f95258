/*
 * j2k.c - JPEG 2000 (Part 1) and HTJ2K (Part 15) frames through OpenJPEG
 * 2.5, from and to memory; HTJ2K encoding through OpenJPH (ojph_shim.cc).
 *
 * Decoding: OpenJPEG applies the inverse component transform itself, so
 * YBR_RCT / YBR_ICT data come out as RGB. Samples keep their raw bits in the
 * Bits Allocated container, whatever Pixel Representation says (the
 * TOSHIBA_J2K_SIZ1_PixRep0 sample has a signed codestream in an unsigned
 * dataset). Two conventions for a component narrower than its container,
 * each matching the reference decoder of its syntax: J2K as GDCM (the value
 * truncated to 8 or 16 bits, then zero-extended), HTJ2K as opj_decompress
 * (sign-extended). Strict mode makes truncated codestreams an error.
 *
 * Encoding (lossless only): reversible 5/3 wavelet, one quality layer, RCT
 * for RGB (declared YBR_RCT).
 */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openjpeg.h>

#include "codec_priv.h"
#include "ojph_shim.h"
#include "core/banned.h"

/* OpenJPEG keeps every sample as an int32 plus its own buffers. */
#define J2K_MAX_SAMPLES ((size_t)1 << 28)

struct memstream {
    const uint8_t *rd;
    uint8_t *wr;
    size_t len, pos, cap;
    bool oom;
};

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *u)
{
    struct memstream *m = u;
    if (m->pos >= m->len)
        return (OPJ_SIZE_T)-1;
    size_t k = m->len - m->pos < n ? m->len - m->pos : n;
    memcpy(buf, m->rd + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *u)
{
    struct memstream *m = u;
    if (n < 0) {
        if ((size_t)-n > m->pos)
            return -1;
        m->pos -= (size_t)-n;
        return n;
    }
    if (m->wr) { /* writing: skipping forward extends the output */
        if ((size_t)n > SIZE_MAX / 2 - m->pos)
            return -1;
        m->pos += (size_t)n;
        return n;
    }
    if ((size_t)n > m->len - m->pos)
        return -1;
    m->pos += (size_t)n;
    return n;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T n, void *u)
{
    struct memstream *m = u;
    if (n < 0 || (!m->wr && (size_t)n > m->len))
        return OPJ_FALSE;
    m->pos = (size_t)n;
    return OPJ_TRUE;
}

static OPJ_SIZE_T ms_write(void *buf, OPJ_SIZE_T n, void *u)
{
    struct memstream *m = u;
    if (n > CODEC_MAX_BYTES || m->pos > CODEC_MAX_BYTES - n) {
        m->oom = true;
        return (OPJ_SIZE_T)-1;
    }
    size_t end = m->pos + n;
    if (end > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < end)
            cap *= 2;
        uint8_t *p = realloc(m->wr, cap);
        if (!p) {
            m->oom = true;
            return (OPJ_SIZE_T)-1;
        }
        memset(p + m->cap, 0, cap - m->cap);
        m->wr = p;
        m->cap = cap;
    }
    memcpy(m->wr + m->pos, buf, n);
    m->pos = end;
    if (end > m->len)
        m->len = end;
    return n;
}

struct opj_msg {
    char text[160];
};

static void on_error(const char *msg, void *u)
{
    struct opj_msg *e = u;
    if (!e->text[0]) {
        snprintf(e->text, sizeof(e->text), "%s", msg);
        size_t n = strlen(e->text);
        if (n && e->text[n - 1] == '\n')
            e->text[n - 1] = 0;
    }
}

static void on_quiet(const char *msg, void *u)
{
    (void)msg;
    (void)u;
}

static int j2k_decode_ts(const struct codec_image *img, const uint8_t *data, size_t len,
                         uint8_t *out, struct codec_out *info, char *err, size_t err_cap,
                         bool gdcm_style)
{
    size_t npix = codec_pixels(img);
    unsigned nb = codec_sample_bytes(img);
    if (npix * img->spp > J2K_MAX_SAMPLES)
        return codec_fail(-E2BIG, err, err_cap, "j2k: image too large");
    static const uint8_t jp2_magic[12] = {0, 0, 0, 12, 'j', 'P', ' ', ' ', 13, 10, 0x87, 10};
    bool jp2 = len >= 12 && memcmp(data, jp2_magic, 12) == 0;
    /* trailing padding after EOC confuses OpenJPEG (GDCM trims it too) */
    for (size_t k = 0; k < 64 && len - k >= 4; k++)
        if (data[len - k - 2] == 0xFF && data[len - k - 1] == 0xD9) {
            len -= k;
            break;
        }

    struct opj_msg msg = {{0}};
    struct memstream ms = {.rd = data, .len = len};
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_stream_t *st = opj_stream_create(65536, OPJ_TRUE);
    opj_image_t *im = NULL;
    int r = 0;
    if (!codec || !st) {
        r = -ENOMEM;
        goto out;
    }
    opj_set_error_handler(codec, on_error, &msg);
    opj_set_warning_handler(codec, on_quiet, NULL);
    opj_set_info_handler(codec, on_quiet, NULL);
    opj_dparameters_t p;
    opj_set_default_decoder_parameters(&p);
    opj_stream_set_user_data(st, &ms, NULL);
    opj_stream_set_user_data_length(st, len);
    opj_stream_set_read_function(st, ms_read);
    opj_stream_set_skip_function(st, ms_skip);
    opj_stream_set_seek_function(st, ms_seek);
    if (!opj_setup_decoder(codec, &p) || !opj_decoder_set_strict_mode(codec, OPJ_TRUE) ||
        !opj_read_header(st, codec, &im) || !im) {
        r = codec_fail(-EBADMSG, err, err_cap, "j2k header: %s", msg.text);
        goto out;
    }
    if (im->x1 - im->x0 != img->cols || im->y1 - im->y0 != img->rows || im->numcomps != img->spp) {
        r = codec_fail(-EBADMSG, err, err_cap, "j2k: %ux%u x%u != dataset %ux%u x%u",
                       im->x1 - im->x0, im->y1 - im->y0, im->numcomps, img->cols, img->rows,
                       img->spp);
        goto out;
    }
    for (unsigned c = 0; c < im->numcomps; c++) {
        const opj_image_comp_t *cp = &im->comps[c];
        if (cp->dx != 1 || cp->dy != 1 || cp->prec < 1 || cp->prec > img->bits_alloc ||
            cp->prec > 31 || cp->prec != im->comps[0].prec || cp->sgnd != im->comps[0].sgnd) {
            r = codec_fail(-EBADMSG, err, err_cap,
                           "j2k: component %u (%u bits, subsampled %ux%u) not handled", c, cp->prec,
                           cp->dx, cp->dy);
            goto out;
        }
    }
    if (!opj_decode(codec, st, im) || !opj_end_decompress(codec, st)) {
        r = codec_fail(-EBADMSG, err, err_cap, "j2k: %s", msg.text[0] ? msg.text : "decode failed");
        goto out;
    }
    for (unsigned c = 0; c < im->numcomps; c++) {
        const opj_image_comp_t *cp = &im->comps[c];
        if (!cp->data || cp->w != img->cols || cp->h != img->rows) {
            r = codec_fail(-EBADMSG, err, err_cap, "j2k: component %u not decoded", c);
            goto out;
        }
    }
    unsigned prec = im->comps[0].prec;
    uint32_t mask = 0xFFFFFFFFu;
    if (gdcm_style && prec <= 16)
        mask = prec <= 8 ? 0xFFu : 0xFFFFu;
    for (unsigned c = 0; c < img->spp; c++) {
        const OPJ_INT32 *src = im->comps[c].data;
        for (size_t i = 0; i < npix; i++)
            codec_put(out, i * img->spp + c, nb, (uint32_t)src[i] & mask);
    }
    info->len = npix * img->spp * nb;
    info->bits_stored = (uint16_t)prec;
    info->pixrep = (uint16_t)(im->comps[0].sgnd ? 1 : 0);
    if (codec_pi_is(img, "YBR_RCT") || codec_pi_is(img, "YBR_ICT"))
        codec_set_photometric(info, "RGB");
out:
    if (im)
        opj_image_destroy(im);
    if (st)
        opj_stream_destroy(st);
    if (codec)
        opj_destroy_codec(codec);
    return r;
}

int j2k_decode(CODEC_DECODE_ARGS)
{
    (void)out_cap;
    return j2k_decode_ts(img, data, len, out, info, err, err_cap, true);
}

int htj2k_decode(CODEC_DECODE_ARGS)
{
    (void)out_cap;
    return j2k_decode_ts(img, data, len, out, info, err, err_cap, false);
}

/* ---- encoding ---- */

/* The coded precision and signedness that reproduce the container bytes,
 * and the samples as int32, interleaved. */
static int32_t *lossless_samples(const struct codec_image *img, const uint8_t *pixels,
                                 unsigned *prec)
{
    unsigned nb = codec_sample_bytes(img);
    size_t n = codec_pixels(img) * img->spp;
    *prec = codec_samples_fit(img, pixels) ? img->bits_stored : img->bits_alloc;
    int32_t *s = malloc(n * sizeof(*s));
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = codec_get(pixels, i, nb);
        s[i] = img->pixrep ? codec_sext(v, *prec) : (int32_t)v;
    }
    return s;
}

static const char *encoded_pi(const struct codec_image *img, bool mct)
{
    return mct ? "YBR_RCT" : img->photometric;
}

int j2k_encode(CODEC_ENCODE_ARGS)
{
    (void)o;
    (void)len;
    if (img->bits_alloc > 16)
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG 2000 encoding: at most 16 bits");
    size_t npix = codec_pixels(img);
    if (npix * img->spp > J2K_MAX_SAMPLES)
        return codec_fail(-E2BIG, err, err_cap, "j2k: image too large");
    unsigned prec;
    int32_t *s = lossless_samples(img, pixels, &prec);
    if (!s)
        return -ENOMEM;
    bool mct = img->spp == 3 && codec_pi_is(img, "RGB");
    opj_image_cmptparm_t cp[3];
    memset(cp, 0, sizeof(cp));
    for (unsigned c = 0; c < img->spp; c++) {
        cp[c].dx = cp[c].dy = 1;
        cp[c].w = img->cols;
        cp[c].h = img->rows;
        cp[c].prec = prec;
        cp[c].sgnd = img->pixrep;
    }
    struct opj_msg msg = {{0}};
    struct memstream ms = {0};
    opj_image_t *im =
        opj_image_create(img->spp, cp, img->spp == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
    opj_codec_t *codec = opj_create_compress(OPJ_CODEC_J2K);
    opj_stream_t *st = opj_stream_create(65536, OPJ_FALSE);
    int r = 0;
    if (!im || !codec || !st) {
        r = -ENOMEM;
        goto out;
    }
    im->x0 = im->y0 = 0;
    im->x1 = img->cols;
    im->y1 = img->rows;
    for (unsigned c = 0; c < img->spp; c++)
        for (size_t i = 0; i < npix; i++)
            im->comps[c].data[i] = s[i * img->spp + c];
    opj_set_error_handler(codec, on_error, &msg);
    opj_set_warning_handler(codec, on_quiet, NULL);
    opj_set_info_handler(codec, on_quiet, NULL);
    opj_cparameters_t p;
    opj_set_default_encoder_parameters(&p);
    p.tcp_numlayers = 1;
    p.tcp_rates[0] = 0; /* lossless */
    p.cp_disto_alloc = 1;
    p.irreversible = 0;
    p.tcp_mct = mct ? 1 : 0;
    unsigned minside = img->cols < img->rows ? img->cols : img->rows;
    int levels = 1;
    while (levels < 6 && (1u << levels) <= minside)
        levels++;
    p.numresolution = levels;
    ms.wr = malloc(65536);
    ms.cap = ms.wr ? 65536 : 0;
    if (!ms.wr) {
        r = -ENOMEM;
        goto out;
    }
    opj_stream_set_user_data(st, &ms, NULL);
    opj_stream_set_write_function(st, ms_write);
    opj_stream_set_skip_function(st, ms_skip);
    opj_stream_set_seek_function(st, ms_seek);
    if (!opj_setup_encoder(codec, &p, im) || !opj_start_compress(codec, im, st) ||
        !opj_encode(codec, st) || !opj_end_compress(codec, st)) {
        r = ms.oom ? -ENOMEM : codec_fail(-EINVAL, err, err_cap, "j2k encode: %s", msg.text);
        goto out;
    }
    *out = ms.wr;
    *out_len = ms.len;
    ms.wr = NULL;
    info->bits_stored = (uint16_t)prec;
    codec_set_photometric(info, encoded_pi(img, mct));
out:
    free(ms.wr);
    free(s);
    if (st)
        opj_stream_destroy(st);
    if (codec)
        opj_destroy_codec(codec);
    if (im)
        opj_image_destroy(im);
    return r;
}

int htj2k_encode(CODEC_ENCODE_ARGS)
{
    (void)o;
    (void)len;
    if (img->bits_alloc > 16)
        return codec_fail(-ENOTSUP, err, err_cap, "HTJ2K encoding: at most 16 bits");
    if (codec_pixels(img) * img->spp > J2K_MAX_SAMPLES)
        return codec_fail(-E2BIG, err, err_cap, "htj2k: image too large");
    unsigned prec;
    int32_t *s = lossless_samples(img, pixels, &prec);
    if (!s)
        return -ENOMEM;
    bool mct = img->spp == 3 && codec_pi_is(img, "RGB");
    int r = ojph_shim_encode(img->cols, img->rows, img->spp, prec, img->pixrep, mct, s, out,
                             out_len, err, err_cap);
    free(s);
    if (r < 0)
        return r;
    info->bits_stored = (uint16_t)prec;
    codec_set_photometric(info, encoded_pi(img, mct));
    return 0;
}
