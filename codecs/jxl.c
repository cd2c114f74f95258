/*
 * jxl.c - JPEG XL frames (.4.110 lossless, .4.111 JPEG recompression,
 * .4.112) through libjxl 0.7's decoder: pixels as djxl outputs them (RGB
 * for colour, whatever the original JPEG's colour space was).
 *
 * libjxl 0.7 cannot output samples at their own bit depth: more than 8 bits
 * come as 16-bit full range and are scaled back to Bits Stored here (exact
 * for lossless data). Its allocations go through a memory manager that
 * refuses to hand out more than JXL_MAX_HEAP bytes per frame.
 */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jxl/decode.h>

#include "codec_priv.h"
#include "core/banned.h"

#define JXL_MAX_SAMPLES ((size_t)1 << 28)

struct heap {
    size_t used, limit;
};

struct block_hdr {
    size_t size;
    size_t pad; /* keeps the payload 16-byte aligned */
};

static void *heap_alloc(void *opaque, size_t size)
{
    struct heap *h = opaque;
    if (size > h->limit - h->used || size > SIZE_MAX - sizeof(struct block_hdr))
        return NULL;
    struct block_hdr *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->size = size;
    h->used += size;
    return b + 1;
}

static void heap_free(void *opaque, void *p)
{
    struct heap *h = opaque;
    if (!p)
        return;
    struct block_hdr *b = (struct block_hdr *)p - 1;
    h->used -= b->size;
    free(b);
}

int jxl_decode(CODEC_DECODE_ARGS)
{
    (void)out_cap;
    size_t npix = codec_pixels(img), n = npix * img->spp;
    unsigned nb = codec_sample_bytes(img);
    if (n > JXL_MAX_SAMPLES)
        return codec_fail(-E2BIG, err, err_cap, "jxl: image too large");
    struct heap heap = {0, (size_t)512 << 20};
    heap.limit += n * 32; /* float planes and group buffers */
    JxlMemoryManager mm = {&heap, heap_alloc, heap_free};
    JxlDecoder *dec = JxlDecoderCreate(&mm);
    if (!dec)
        return -ENOMEM;
    uint8_t *tmp = NULL;
    int r = 0;
    bool have_info = false, done = false;
    unsigned bits = 8, sb = 1;
    JxlPixelFormat fmt = {img->spp, JXL_TYPE_UINT8, JXL_LITTLE_ENDIAN, 0};
    if (JxlDecoderSubscribeEvents(dec, JXL_DEC_BASIC_INFO | JXL_DEC_FULL_IMAGE) !=
            JXL_DEC_SUCCESS ||
        JxlDecoderSetInput(dec, data, len) != JXL_DEC_SUCCESS) {
        r = -ENOMEM;
        goto out;
    }
    JxlDecoderCloseInput(dec);
    while (!done) {
        JxlDecoderStatus s = JxlDecoderProcessInput(dec);
        if (s == JXL_DEC_BASIC_INFO) {
            JxlBasicInfo bi;
            if (JxlDecoderGetBasicInfo(dec, &bi) != JXL_DEC_SUCCESS) {
                r = codec_fail(-EBADMSG, err, err_cap, "jxl: no basic info");
                goto out;
            }
            if (bi.xsize != img->cols || bi.ysize != img->rows ||
                bi.num_color_channels != img->spp || bi.bits_per_sample < 1 ||
                bi.bits_per_sample > 16 || bi.exponent_bits_per_sample) {
                r = codec_fail(-EBADMSG, err, err_cap, "jxl: %ux%u x%u %u bits != dataset",
                               bi.xsize, bi.ysize, bi.num_color_channels, bi.bits_per_sample);
                goto out;
            }
            bits = bi.bits_per_sample;
            sb = bits <= 8 ? 1 : 2;
            if (sb > nb) {
                r = codec_fail(-EBADMSG, err, err_cap, "jxl: %u bits in %u-bit container", bits,
                               img->bits_alloc);
                goto out;
            }
            fmt.data_type = sb == 1 ? JXL_TYPE_UINT8 : JXL_TYPE_UINT16;
            have_info = true;
        } else if (s == JXL_DEC_NEED_IMAGE_OUT_BUFFER) {
            size_t sz = 0;
            if (!have_info || JxlDecoderImageOutBufferSize(dec, &fmt, &sz) != JXL_DEC_SUCCESS ||
                sz != n * sb) {
                r = codec_fail(-EBADMSG, err, err_cap, "jxl: unexpected output size");
                goto out;
            }
            uint8_t *dst = out;
            if (sb != nb || bits > 8) {
                tmp = malloc(sz);
                if (!tmp) {
                    r = -ENOMEM;
                    goto out;
                }
                dst = tmp;
            }
            if (JxlDecoderSetImageOutBuffer(dec, &fmt, dst, sz) != JXL_DEC_SUCCESS) {
                r = codec_fail(-EBADMSG, err, err_cap, "jxl: output buffer refused");
                goto out;
            }
        } else if (s == JXL_DEC_FULL_IMAGE) {
            done = true; /* the first frame is the DICOM frame */
        } else if (s == JXL_DEC_SUCCESS) {
            r = codec_fail(-EBADMSG, err, err_cap, "jxl: no image in codestream");
            goto out;
        } else if (s == JXL_DEC_NEED_MORE_INPUT) {
            r = codec_fail(-EBADMSG, err, err_cap, "jxl: truncated codestream");
            goto out;
        } else if (s == JXL_DEC_ERROR) {
            r = codec_fail(heap.used >= heap.limit ? -ENOMEM : -EBADMSG, err, err_cap,
                           "jxl: decoding failed");
            goto out;
        } else {
            r = codec_fail(-EBADMSG, err, err_cap, "jxl: unexpected decoder status %d", (int)s);
            goto out;
        }
    }
    if (tmp) {
        uint32_t maxv = (1u << bits) - 1;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = codec_get(tmp, i, sb);
            if (sb == 2) /* 16-bit full range back to bits */
                v = (v * maxv + 32767u) / 65535u;
            codec_put(out, i, nb, v);
        }
    }
    info->len = n * nb;
    info->bits_stored = (uint16_t)bits;
    if (img->spp == 3)
        codec_set_photometric(info, "RGB");
out:
    free(tmp);
    JxlDecoderDestroy(dec);
    return r;
}
