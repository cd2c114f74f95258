/* codec.c - see codec.h: image validation and dispatch per transfer syntax. */
#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_priv.h"
#include "core/banned.h"

int codec_fail(int r, char *err, size_t err_cap, const char *fmt, ...)
{
    if (err && err_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_cap, fmt, ap);
        va_end(ap);
    }
    return r;
}

void codec_set_photometric(struct codec_out *info, const char *pi)
{
    size_t n = 0;
    if (pi) {
        while (*pi == ' ')
            pi++;
        while (pi[n] && pi[n] != ' ' && n + 1 < sizeof(info->photometric)) {
            info->photometric[n] = pi[n];
            n++;
        }
    }
    info->photometric[n] = 0;
}

/* The image attributes every codec relies on. */
static bool image_ok(const struct codec_image *img)
{
    if (!img || !img->rows || !img->cols)
        return false;
    if (img->spp != 1 && img->spp != 3)
        return false;
    switch (img->bits_alloc) {
    case 1:
    case 8:
    case 16:
    case 32:
        break;
    case 64:
        if (!img->float_data)
            return false;
        break;
    default:
        return false;
    }
    if (img->float_data && img->bits_alloc != 32 && img->bits_alloc != 64)
        return false;
    if (img->bits_alloc == 1 && img->spp != 1)
        return false;
    if (img->bits_stored == 0 || img->bits_stored > img->bits_alloc)
        return false;
    if (img->pixrep > 1 || img->planar > 1)
        return false;
    return true;
}

size_t codec_frame_size(const struct codec_image *img)
{
    if (!image_ok(img))
        return 0;
    size_t n = codec_pixels(img) * img->spp * codec_sample_bytes(img);
    return n > CODEC_MAX_BYTES ? 0 : n;
}

static bool ts_in(const char *ts, const char *const *list, size_t n)
{
    if (!ts)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ts, list[i]) == 0)
            return true;
    return false;
}

static const char *const native_ts[] = {TS_IMPLICIT_LE, TS_EXPLICIT_LE, TS_DEFLATED_LE,
                                        TS_EXPLICIT_BE, TS_ENCAPS_UNCOMPRESSED};
static const char *const jpeg_ts[] = {TS_JPEG_BASELINE, TS_JPEG_EXTENDED, TS_JPEG_LOSSLESS,
                                      TS_JPEG_LOSSLESS_SV1};
static const char *const jls_ts[] = {TS_JPEGLS, TS_JPEGLS_NEAR};
static const char *const j2k_ts[] = {TS_J2K_LOSSLESS, TS_J2K};
static const char *const htj2k_ts[] = {TS_HTJ2K_LOSSLESS, TS_HTJ2K_RPCL, TS_HTJ2K};
static const char *const jxl_ts[] = {TS_JXL_LOSSLESS, TS_JXL_JPEG, TS_JXL};

bool codec_can_decode(const char *ts_uid)
{
    return ts_in(ts_uid, native_ts, YY_ARRAY_LEN(native_ts)) ||
           ts_in(ts_uid, jpeg_ts, YY_ARRAY_LEN(jpeg_ts)) ||
           ts_in(ts_uid, jls_ts, YY_ARRAY_LEN(jls_ts)) ||
           ts_in(ts_uid, j2k_ts, YY_ARRAY_LEN(j2k_ts)) ||
           ts_in(ts_uid, htj2k_ts, YY_ARRAY_LEN(htj2k_ts)) ||
           ts_in(ts_uid, jxl_ts, YY_ARRAY_LEN(jxl_ts)) ||
           (ts_uid && (strcmp(ts_uid, TS_RLE) == 0 || strcmp(ts_uid, TS_DEFLATED_FRAME) == 0));
}

int codec_decode(const char *ts_uid, const struct codec_image *img, const uint8_t *data, size_t len,
                 unsigned first_bit, uint8_t *out, size_t out_cap, struct codec_out *info,
                 char *err, size_t err_cap)
{
    struct codec_out dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    if (err && err_cap)
        err[0] = 0;
    if (!ts_uid || !codec_can_decode(ts_uid))
        return codec_fail(-ENOTSUP, err, err_cap, "transfer syntax %s not supported",
                          ts_uid ? ts_uid : "(none)");
    if (!image_ok(img))
        return codec_fail(-ENOTSUP, err, err_cap, "unsupported image description");
    size_t need = codec_frame_size(img);
    if (!need)
        return codec_fail(-E2BIG, err, err_cap, "frame larger than %zu bytes", CODEC_MAX_BYTES);
    if (!out || out_cap < need)
        return codec_fail(-E2BIG, err, err_cap, "output buffer %zu < %zu bytes", out_cap, need);
    if (!data && len)
        return -EINVAL;
    if (len > CODEC_MAX_BYTES)
        return codec_fail(-E2BIG, err, err_cap, "codestream too large");
    info->bits_alloc = img->bits_alloc == 1 ? 8 : img->bits_alloc;
    info->bits_stored = img->bits_stored;
    info->pixrep = img->pixrep;
    codec_set_photometric(info, img->photometric);

    int r;
    if (ts_in(ts_uid, native_ts, YY_ARRAY_LEN(native_ts)))
        r = native_decode(img, data, len, first_bit, out, out_cap, info, err, err_cap);
    else if (strcmp(ts_uid, TS_DEFLATED_FRAME) == 0)
        r = deflate_frame_decode(img, data, len, out, out_cap, info, err, err_cap);
    else if (img->float_data || img->bits_alloc == 1 || img->bits_alloc > 32)
        r = codec_fail(-ENOTSUP, err, err_cap, "bit depth not handled for compressed data");
    else if (strcmp(ts_uid, TS_RLE) == 0)
        r = rle_decode(img, data, len, out, out_cap, info, err, err_cap);
    else if (ts_in(ts_uid, jpeg_ts, YY_ARRAY_LEN(jpeg_ts)))
        r = jpeg_decode(img, data, len, out, out_cap, info, err, err_cap);
    else if (ts_in(ts_uid, jls_ts, YY_ARRAY_LEN(jls_ts)))
        r = jls_decode(img, data, len, out, out_cap, info, err, err_cap);
    else if (ts_in(ts_uid, j2k_ts, YY_ARRAY_LEN(j2k_ts)))
        r = j2k_decode(img, data, len, out, out_cap, info, err, err_cap);
    else if (ts_in(ts_uid, htj2k_ts, YY_ARRAY_LEN(htj2k_ts)))
        r = htj2k_decode(img, data, len, out, out_cap, info, err, err_cap);
    else
        r = jxl_decode(img, data, len, out, out_cap, info, err, err_cap);
    if (r < 0)
        info->len = 0;
    else if (info->len > out_cap)
        r = codec_fail(-EBADMSG, err, err_cap, "internal: output length"); /* not reached */
    return r;
}

bool codec_samples_fit(const struct codec_image *img, const uint8_t *pixels)
{
    unsigned nb = codec_sample_bytes(img);
    unsigned bs = img->bits_stored;
    if (bs >= 32 || bs >= img->bits_alloc)
        return true;
    size_t n = codec_pixels(img) * img->spp;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = codec_get(pixels, i, nb);
        if (img->pixrep) {
            int32_t s = codec_sext(v, bs);
            uint32_t back = (uint32_t)s;
            if (nb < 4)
                back &= (1u << (nb * 8)) - 1;
            if (back != v)
                return false;
        } else if (v >> bs) {
            return false;
        }
    }
    return true;
}

static const char *const encode_ts[] = {TS_JPEG_BASELINE, TS_J2K_LOSSLESS, TS_HTJ2K_LOSSLESS,
                                        TS_JPEGLS, TS_RLE};

bool codec_can_encode(const char *ts_uid)
{
    return ts_in(ts_uid, encode_ts, YY_ARRAY_LEN(encode_ts));
}

int codec_encode(const char *ts_uid, const struct codec_image *img, const uint8_t *pixels,
                 size_t len, const struct codec_encode_opts *o, uint8_t **out, size_t *out_len,
                 struct codec_out *info, char *err, size_t err_cap)
{
    struct codec_out dummy;
    struct codec_encode_opts defaults = {0};
    if (!info)
        info = &dummy;
    if (!o)
        o = &defaults;
    memset(info, 0, sizeof(*info));
    if (err && err_cap)
        err[0] = 0;
    if (!out || !out_len)
        return -EINVAL;
    *out = NULL;
    *out_len = 0;
    if (!codec_can_encode(ts_uid))
        return codec_fail(-ENOTSUP, err, err_cap, "cannot encode to %s",
                          ts_uid ? ts_uid : "(none)");
    if (!image_ok(img) || img->float_data || img->bits_alloc == 1 || img->bits_alloc > 32)
        return codec_fail(-ENOTSUP, err, err_cap, "image type cannot be encoded");
    size_t need = codec_frame_size(img);
    if (!need)
        return codec_fail(-E2BIG, err, err_cap, "frame too large");
    /* uncompressed YBR_FULL_422 (2 bytes a pixel) is only taken by JPEG */
    bool ybr422 = img->spp == 3 && img->bits_alloc == 8 &&
                  (codec_pi_is(img, "YBR_FULL_422") || codec_pi_is(img, "YBR_PARTIAL_422"));
    if (ybr422 && len < need && strcmp(ts_uid, TS_JPEG_BASELINE) != 0)
        return codec_fail(-ENOTSUP, err, err_cap, "YBR_FULL_422 input only to JPEG baseline");
    if (!pixels || (len < need && !(ybr422 && len >= codec_pixels(img) * 2)))
        return codec_fail(-EINVAL, err, err_cap, "pixel buffer %zu < %zu bytes", len, need);
    info->bits_alloc = img->bits_alloc;
    info->bits_stored = img->bits_stored;
    info->pixrep = img->pixrep;
    codec_set_photometric(info, img->photometric);

    int r;
    if (strcmp(ts_uid, TS_JPEG_BASELINE) == 0)
        r = jpeg_encode(img, pixels, len, o, out, out_len, info, err, err_cap);
    else if (strcmp(ts_uid, TS_J2K_LOSSLESS) == 0)
        r = j2k_encode(img, pixels, len, o, out, out_len, info, err, err_cap);
    else if (strcmp(ts_uid, TS_HTJ2K_LOSSLESS) == 0)
        r = htj2k_encode(img, pixels, len, o, out, out_len, info, err, err_cap);
    else if (strcmp(ts_uid, TS_JPEGLS) == 0)
        r = jls_encode(img, pixels, len, o, out, out_len, info, err, err_cap);
    else
        r = rle_encode(img, pixels, len, o, out, out_len, info, err, err_cap);
    if (r < 0) {
        free(*out);
        *out = NULL;
        *out_len = 0;
    } else {
        info->len = *out_len;
    }
    return r;
}
