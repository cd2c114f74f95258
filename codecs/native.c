/*
 * native.c - native (uncompressed) frames to the canonical layout, and
 * Deflated Image Frame Compression (each frame deflated on its own).
 *
 * Canonical: interleaved samples, little-endian containers, 1-bit unpacked
 * to one byte per pixel; values untouched. Uncompressed YBR_FULL_422 keeps
 * its stored layout (Y0 Y1 Cb Cr, 2 bytes a pixel, PS3.3 C.7.6.3.1.2).
 */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "codec_priv.h"
#include "core/banned.h"

static bool is_ybr422(const struct codec_image *img)
{
    return img->spp == 3 && img->bits_alloc == 8 &&
           (codec_pi_is(img, "YBR_FULL_422") || codec_pi_is(img, "YBR_PARTIAL_422"));
}

int native_decode(const struct codec_image *img, const uint8_t *data, size_t len,
                  unsigned first_bit, uint8_t *out, size_t out_cap, struct codec_out *info,
                  char *err, size_t err_cap)
{
    size_t npix = codec_pixels(img);
    size_t nsamp = npix * img->spp;
    unsigned nb = codec_sample_bytes(img);

    if (img->bits_alloc == 1) {
        if (first_bit > 7)
            return codec_fail(-EINVAL, err, err_cap, "first_bit %u", first_bit);
        if (len < (first_bit + nsamp + 7) / 8)
            return codec_fail(-EBADMSG, err, err_cap, "1-bit frame short: %zu bytes", len);
        /* PS3.5 8.1.1: the first pixel is in the least significant bit */
        for (size_t i = 0; i < nsamp; i++) {
            size_t bit = first_bit + i;
            out[i] = (uint8_t)((data[bit >> 3] >> (bit & 7)) & 1);
        }
        info->len = nsamp;
        return 0;
    }
    if (is_ybr422(img) && len < nsamp && len >= npix * 2) {
        /* subsampled as stored: copied as is */
        if (out_cap < npix * 2)
            return -E2BIG;
        memcpy(out, data, npix * 2);
        info->len = npix * 2;
        return 0;
    }
    size_t need = nsamp * nb;
    if (len < need)
        return codec_fail(-EBADMSG, err, err_cap, "native frame short: %zu < %zu bytes", len, need);
    bool swap = img->big_endian && nb > 1;
    if (img->spp == 1 || img->planar == 0) {
        if (!swap) {
            memcpy(out, data, need);
        } else {
            for (size_t i = 0; i < nsamp; i++)
                for (unsigned k = 0; k < nb; k++)
                    out[i * nb + k] = data[i * nb + nb - 1 - k];
        }
    } else {
        /* planar configuration 1: RRR..GGG..BBB.. -> RGBRGB.. */
        for (unsigned c = 0; c < img->spp; c++) {
            const uint8_t *plane = data + (size_t)c * npix * nb;
            for (size_t i = 0; i < npix; i++) {
                uint8_t *dst = out + (i * img->spp + c) * nb;
                const uint8_t *src = plane + i * nb;
                for (unsigned k = 0; k < nb; k++)
                    dst[k] = swap ? src[nb - 1 - k] : src[k];
            }
        }
    }
    info->len = need;
    return 0;
}

/* PS3.5 A.4.13 (Sup 244) says deflate; some writers add a zlib wrapper. */
static bool looks_zlib(const uint8_t *d, size_t len)
{
    return len >= 2 && (d[0] & 0x0F) == 8 && (d[0] >> 4) <= 7 &&
           ((unsigned)d[0] << 8 | d[1]) % 31 == 0;
}

static int inflate_into(const uint8_t *data, size_t len, int wbits, uint8_t *dst, size_t cap,
                        size_t *got)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, wbits) != Z_OK)
        return -ENOMEM;
    int r = 0;
    size_t in_done = 0, out_done = 0;
    for (;;) {
        uInt in_chunk = (uInt)((len - in_done) > 1u << 30 ? 1u << 30 : (len - in_done));
        uInt out_chunk = (uInt)((cap - out_done) > 1u << 30 ? 1u << 30 : (cap - out_done));
        z.next_in = (Bytef *)(uintptr_t)(data + in_done);
        z.avail_in = in_chunk;
        z.next_out = dst + out_done;
        z.avail_out = out_chunk;
        int zr = inflate(&z, Z_NO_FLUSH);
        in_done += in_chunk - z.avail_in;
        out_done += out_chunk - z.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_BUF_ERROR && out_done == cap) {
            r = -EBADMSG; /* more data than the frame: wrong dimensions */
            break;
        }
        if (zr != Z_OK) {
            r = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
            break;
        }
        if (in_done == len && out_done < cap) {
            r = -EBADMSG; /* truncated */
            break;
        }
    }
    inflateEnd(&z);
    *got = out_done;
    return r;
}

int deflate_frame_decode(CODEC_DECODE_ARGS)
{
    size_t nsamp = codec_pixels(img) * img->spp;
    size_t stored = img->bits_alloc == 1 ? (nsamp + 7) / 8 : nsamp * codec_sample_bytes(img);
    if (is_ybr422(img))
        stored = codec_pixels(img) * 2;
    /* room for one byte of padding more (an odd frame padded to even) */
    uint8_t *tmp = malloc(stored + 2);
    if (!tmp)
        return -ENOMEM;
    size_t got = 0;
    int r = inflate_into(data, len, looks_zlib(data, len) ? MAX_WBITS : -MAX_WBITS, tmp, stored + 2,
                         &got);
    if (r == 0 && (got < stored || got > stored + 1))
        r = -EBADMSG;
    if (r < 0) {
        free(tmp);
        return codec_fail(r, err, err_cap, "deflated frame: inflate failed or short (%zu of %zu)",
                          got, stored);
    }
    struct codec_image le = *img;
    le.big_endian = false;
    r = native_decode(&le, tmp, got, 0, out, out_cap, info, err, err_cap);
    free(tmp);
    return r;
}
