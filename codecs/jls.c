/*
 * jls.c - JPEG-LS (ISO 14495-1) through CharLS 2.4's C API, lossless and
 * near-lossless decode, lossless encode.
 *
 * Samples come out as CharLS (and GDCM, which uses CharLS) decodes them:
 * no sign extension (JPEG-LS has no sign; a signed 15-bit image decodes to
 * its raw 15-bit patterns), interleaved whatever the scan interleave mode.
 */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <charls/charls.h>

#include "codec_priv.h"
#include "core/banned.h"

/* CharLS 2.4.1 (Debian 12) spins forever when the entropy-coded data runs
 * out at the end of the buffer (its bit reader only stops cleanly at a
 * marker). A buffer that ends with a marker can never run out that way, so
 * a frame not ending with EOI gets one appended. */
static bool ends_with_eoi(const uint8_t *d, size_t len)
{
    while (len > 2 && d[len - 1] == 0x00)
        len--;
    return len >= 2 && d[len - 2] == 0xFF && d[len - 1] == 0xD9;
}

int jls_decode(CODEC_DECODE_ARGS)
{
    (void)out_cap;
    uint8_t *tmp = NULL, *fixed = NULL;
    if (!ends_with_eoi(data, len)) {
        fixed = malloc(len + 2);
        if (!fixed)
            return -ENOMEM;
        memcpy(fixed, data, len);
        fixed[len] = 0xFF;
        fixed[len + 1] = 0xD9;
        data = fixed;
        len += 2;
    }
    charls_jpegls_decoder *d = charls_jpegls_decoder_create();
    if (!d) {
        free(fixed);
        return -ENOMEM;
    }
    int r = 0;
    charls_frame_info fi;
    charls_interleave_mode ilv = CHARLS_INTERLEAVE_MODE_NONE;
    charls_jpegls_errc e = charls_jpegls_decoder_set_source_buffer(d, data, len);
    if (!e)
        e = charls_jpegls_decoder_read_header(d);
    if (!e)
        e = charls_jpegls_decoder_get_frame_info(d, &fi);
    if (!e)
        e = charls_jpegls_decoder_get_interleave_mode(d, &ilv);
    if (e) {
        r = codec_fail(-EBADMSG, err, err_cap, "jpeg-ls: %s", charls_get_error_message(e));
        goto out;
    }
    if (fi.width != img->cols || fi.height != img->rows || fi.component_count != img->spp) {
        r = codec_fail(-EBADMSG, err, err_cap, "jpeg-ls: %ux%u x%d != dataset %ux%u x%u", fi.width,
                       fi.height, fi.component_count, img->cols, img->rows, img->spp);
        goto out;
    }
    unsigned nb = codec_sample_bytes(img);
    unsigned sb = fi.bits_per_sample <= 8 ? 1 : 2;
    if (fi.bits_per_sample < 2 || fi.bits_per_sample > 16 || sb > nb) {
        r = codec_fail(-EBADMSG, err, err_cap, "jpeg-ls: %d bits in a %u-bit container",
                       fi.bits_per_sample, img->bits_alloc);
        goto out;
    }
    size_t npix = codec_pixels(img), n = npix * img->spp;
    size_t dsize = 0;
    e = charls_jpegls_decoder_get_destination_size(d, 0, &dsize);
    if (e || dsize != n * sb) {
        r = codec_fail(-EBADMSG, err, err_cap, "jpeg-ls: unexpected destination size");
        goto out;
    }
    bool planar = img->spp > 1 && ilv == CHARLS_INTERLEAVE_MODE_NONE;
    bool direct = !planar && sb == nb;
    if (!direct) {
        tmp = malloc(dsize);
        if (!tmp) {
            r = -ENOMEM;
            goto out;
        }
    }
    e = charls_jpegls_decoder_decode_to_buffer(d, direct ? out : tmp, dsize, 0);
    if (e) {
        r = codec_fail(-EBADMSG, err, err_cap, "jpeg-ls: %s", charls_get_error_message(e));
        goto out;
    }
    if (!direct) {
        for (size_t i = 0; i < n; i++) {
            /* planar: component c of pixel p is at c * npix + p */
            size_t src = planar ? (i % img->spp) * npix + i / img->spp : i;
            codec_put(out, i, nb, codec_get(tmp, src, sb));
        }
    }
    info->len = n * nb;
    info->bits_stored = (uint16_t)fi.bits_per_sample;
out:
    free(tmp);
    free(fixed);
    charls_jpegls_decoder_destroy(d);
    return r;
}

int jls_encode(CODEC_ENCODE_ARGS)
{
    (void)o;
    (void)len;
    unsigned nb = codec_sample_bytes(img);
    if (nb > 2)
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG-LS takes at most 16 bits");
    /* a precision that reproduces the container bytes exactly */
    unsigned bps = img->bits_alloc;
    if (!img->pixrep && codec_samples_fit(img, pixels))
        bps = img->bits_stored < 2 ? 2 : img->bits_stored;
    unsigned sb = bps <= 8 ? 1 : 2;
    size_t n = codec_pixels(img) * img->spp;
    const uint8_t *src = pixels;
    uint8_t *tmp = NULL, *buf = NULL;
    int r = 0;
    charls_jpegls_encoder *enc = charls_jpegls_encoder_create();
    if (!enc)
        return -ENOMEM;
    if (sb != nb) { /* 16-bit container of <= 8-bit values */
        tmp = malloc(n);
        if (!tmp) {
            r = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)codec_get(pixels, i, nb);
        src = tmp;
    }
    charls_frame_info fi = {.width = img->cols,
                            .height = img->rows,
                            .bits_per_sample = (int32_t)bps,
                            .component_count = img->spp};
    size_t cap = 0;
    charls_jpegls_errc e = charls_jpegls_encoder_set_frame_info(enc, &fi);
    if (!e && img->spp > 1)
        e = charls_jpegls_encoder_set_interleave_mode(enc, CHARLS_INTERLEAVE_MODE_SAMPLE);
    if (!e)
        e = charls_jpegls_encoder_set_near_lossless(enc, 0);
    if (!e)
        e = charls_jpegls_encoder_get_estimated_destination_size(enc, &cap);
    if (e) {
        r = codec_fail(-EINVAL, err, err_cap, "jpeg-ls: %s", charls_get_error_message(e));
        goto out;
    }
    buf = malloc(cap);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    size_t written = 0;
    e = charls_jpegls_encoder_set_destination_buffer(enc, buf, cap);
    if (!e)
        e = charls_jpegls_encoder_encode_from_buffer(enc, src, n * sb, 0);
    if (!e)
        e = charls_jpegls_encoder_get_bytes_written(enc, &written);
    if (e) {
        r = codec_fail(-EINVAL, err, err_cap, "jpeg-ls: %s", charls_get_error_message(e));
        goto out;
    }
    *out = buf;
    *out_len = written;
    buf = NULL;
    info->bits_stored = (uint16_t)bps;
out:
    free(buf);
    free(tmp);
    charls_jpegls_encoder_destroy(enc);
    return r;
}
