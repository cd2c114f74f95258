/*
 * rle.c - DICOM RLE (PS3.5 Annex G), our own code.
 *
 * A frame is a 64-byte header (segment count, then 15 little-endian segment
 * offsets) and one PackBits segment per byte plane: for each sample, its
 * bytes most significant first. Segments always hold whole planes, whatever
 * the dataset's Planar Configuration says; the output is interleaved.
 */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec_priv.h"
#include "core/banned.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Decodes one PackBits segment into every stride-th byte of dst, writing at
 * most n bytes. Returns the number of bytes the whole segment decodes to
 * (a trailing pad byte decodes to nothing), so the caller can insist on
 * exactly n as pydicom does: more or fewer means the dataset's dimensions
 * do not fit the data. */
static size_t unpack_segment(const uint8_t *s, size_t slen, uint8_t *dst, size_t n, size_t stride)
{
    size_t i = 0, o = 0;
    while (i < slen) {
        int8_t h = (int8_t)s[i++];
        if (h >= 0) {
            size_t cnt = (size_t)h + 1;
            if (cnt > slen - i)
                cnt = slen - i;
            for (size_t k = 0; k < cnt && o + k < n; k++)
                dst[(o + k) * stride] = s[i + k];
            i += cnt;
            o += cnt;
        } else if (h != -128) {
            if (i >= slen)
                break;
            size_t cnt = (size_t)(1 - h);
            uint8_t b = s[i++];
            for (size_t k = 0; k < cnt && o + k < n; k++)
                dst[(o + k) * stride] = b;
            o += cnt;
        }
    }
    return o;
}

int rle_decode(CODEC_DECODE_ARGS)
{
    size_t npix = codec_pixels(img);
    unsigned nb = codec_sample_bytes(img);
    unsigned nseg = img->spp * nb;
    if (len < 64)
        return codec_fail(-EBADMSG, err, err_cap, "RLE header truncated");
    uint32_t count = le32(data);
    if (count != nseg || count > 15)
        return codec_fail(-EBADMSG, err, err_cap, "RLE has %u segments, expected %u", count, nseg);
    if (out_cap < npix * nseg)
        return -E2BIG;
    for (unsigned s = 0; s < nseg; s++) {
        uint32_t off = le32(data + 4 + 4 * s);
        size_t end = s + 1 < nseg ? le32(data + 8 + 4 * s) : len;
        if (off < 64 || off > len || end < off || end > len)
            return codec_fail(-EBADMSG, err, err_cap, "RLE segment %u offsets %u..%zu bad", s, off,
                              end);
        unsigned sample = s / nb, byte = nb - 1 - s % nb; /* MSB first */
        uint8_t *dst = out + (size_t)sample * nb + byte;
        size_t got = unpack_segment(data + off, end - off, dst, npix, (size_t)img->spp * nb);
        if (got != npix)
            return codec_fail(-EBADMSG, err, err_cap,
                              "RLE segment %u decodes to %zu bytes, not %zu", s, got, npix);
    }
    info->len = npix * nseg;
    if (img->spp == 3 && (codec_pi_is(img, "YBR_FULL_422") || codec_pi_is(img, "YBR_PARTIAL_422")))
        codec_set_photometric(info, "YBR_FULL"); /* G.2: RLE holds full chroma */
    return 0;
}

/* PackBits one row of n bytes taken every stride-th byte of src into dst
 * (room for n + n / 128 + 2 bytes: runs are only made of 3 or more equal
 * bytes, so nothing but the literal headers can expand). Returns bytes
 * written. */
static size_t pack_row(const uint8_t *src, size_t n, size_t stride, uint8_t *dst)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t run = 1;
        while (i + run < n && run < 128 && src[(i + run) * stride] == src[i * stride])
            run++;
        if (run >= 3) {
            dst[o++] = (uint8_t)(257 - run); /* -(run-1) */
            dst[o++] = src[i * stride];
            i += run;
            continue;
        }
        /* literal up to the next run of 3 or more (or 128 bytes) */
        size_t lit = 0;
        while (i + lit < n && lit < 128) {
            size_t j = i + lit;
            if (j + 2 < n && src[j * stride] == src[(j + 1) * stride] &&
                src[j * stride] == src[(j + 2) * stride])
                break;
            lit++;
        }
        dst[o++] = (uint8_t)(lit - 1);
        for (size_t k = 0; k < lit; k++)
            dst[o++] = src[(i + k) * stride];
        i += lit;
    }
    return o;
}

int rle_encode(CODEC_ENCODE_ARGS)
{
    (void)o;
    (void)len;
    size_t rows = img->rows, cols = img->cols;
    unsigned nb = codec_sample_bytes(img);
    unsigned nseg = img->spp * nb;
    if (nseg > 15)
        return codec_fail(-ENOTSUP, err, err_cap, "RLE: too many segments");
    /* worst case per row: cols + ceil(cols/128) header bytes; +1 pad */
    size_t seg_max = rows * (cols + cols / 128 + 2) + 1;
    size_t cap = 64 + nseg * seg_max;
    uint8_t *buf = calloc(1, cap);
    if (!buf)
        return -ENOMEM;
    size_t pos = 64;
    buf[0] = (uint8_t)nseg;
    size_t stride = (size_t)img->spp * nb;
    for (unsigned s = 0; s < nseg; s++) {
        uint32_t off = (uint32_t)pos;
        buf[4 + 4 * s] = (uint8_t)off;
        buf[5 + 4 * s] = (uint8_t)(off >> 8);
        buf[6 + 4 * s] = (uint8_t)(off >> 16);
        buf[7 + 4 * s] = (uint8_t)(off >> 24);
        unsigned sample = s / nb, byte = nb - 1 - s % nb;
        const uint8_t *src = pixels + (size_t)sample * nb + byte;
        /* G.3.1: each row is encoded separately */
        for (size_t y = 0; y < rows; y++)
            pos += pack_row(src + y * cols * stride, cols, stride, buf + pos);
        if (pos & 1)
            buf[pos++] = 0; /* segments are padded to even length */
    }
    if (pos > UINT32_MAX) {
        free(buf);
        return codec_fail(-E2BIG, err, err_cap, "RLE frame too large");
    }
    *out = buf;
    *out_len = pos;
    codec_set_photometric(info, img->photometric);
    if (img->spp == 3 && (codec_pi_is(img, "YBR_FULL_422") || codec_pi_is(img, "YBR_PARTIAL_422")))
        codec_set_photometric(info, "YBR_FULL");
    return 0;
}
