/* imgenc.c - see imgenc.h. */
#include "core/common.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <webp/encode.h>

#include "render/imgenc.h"
#include "core/banned.h"

const char *img_media_type(enum img_format f)
{
    switch (f) {
    case IMG_PNG:
        return "image/png";
    case IMG_GIF:
        return "image/gif";
    case IMG_WEBP:
        return "image/webp";
    case IMG_JPEG:
    default:
        return "image/jpeg";
    }
}

/* ---- JPEG ---- */

struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jmp;
};

static void jerr_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    longjmp(e->jmp, 1);
}

static int encode_jpeg(const struct image8 *im, unsigned quality, struct buf *out)
{
    struct jpeg_compress_struct c;
    struct jerr e;
    unsigned char *mem = NULL;
    unsigned long mem_len = 0;
    c.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jerr_exit;
    if (setjmp(e.jmp)) {
        jpeg_destroy_compress(&c);
        free(mem);
        return -EIO;
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &mem_len);
    c.image_width = im->w;
    c.image_height = im->h;
    c.input_components = (int)im->channels;
    c.in_color_space = im->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality ? (int)quality : 90, TRUE);
    c.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(im->px + (size_t)c.next_scanline * im->w * im->channels);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    int r = buf_append(out, mem, mem_len);
    free(mem);
    return r;
}

/* ---- PNG ---- */

static int encode_png(const struct image8 *im, struct buf *out)
{
    png_image p;
    memset(&p, 0, sizeof(p));
    p.version = PNG_IMAGE_VERSION;
    p.width = im->w;
    p.height = im->h;
    p.format = im->channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_get_memory_size(p, size, 0, im->px, 0, NULL))
        return -EIO;
    int r = buf_reserve(out, size);
    if (r < 0)
        return r;
    if (!png_image_write_to_memory(&p, out->data + out->len, &size, 0, im->px, 0, NULL)) {
        png_image_free(&p);
        return -EIO;
    }
    out->len += size;
    out->data[out->len] = 0;
    return 0;
}

/* ---- WebP ---- */

static int encode_webp(const struct image8 *im, unsigned quality, struct buf *out)
{
    uint8_t *rgb = im->px, *tmp = NULL;
    if (im->channels == 1) {
        tmp = malloc((size_t)im->w * im->h * 3);
        if (!tmp)
            return -ENOMEM;
        for (size_t i = 0; i < (size_t)im->w * im->h; i++)
            tmp[3 * i] = tmp[3 * i + 1] = tmp[3 * i + 2] = im->px[i];
        rgb = tmp;
    }
    uint8_t *o = NULL;
    size_t n = WebPEncodeRGB(rgb, (int)im->w, (int)im->h, (int)im->w * 3,
                             (float)(quality ? quality : 90), &o);
    free(tmp);
    if (!n)
        return -EIO;
    int r = buf_append(out, o, n);
    WebPFree(o);
    return r;
}

/* ---- GIF (GIF89a, LZW) ---- */

struct lzw_out {
    struct buf *b;
    uint8_t block[256];
    unsigned blen;
    uint32_t acc;
    unsigned nbits;
    int err;
};

static void flush_block(struct lzw_out *w)
{
    if (w->blen == 0)
        return;
    uint8_t n = (uint8_t)w->blen;
    w->err |= buf_append(w->b, &n, 1);
    w->err |= buf_append(w->b, w->block, w->blen);
    w->blen = 0;
}

static void put_code(struct lzw_out *w, unsigned code, unsigned size)
{
    w->acc |= (uint32_t)code << w->nbits;
    w->nbits += size;
    while (w->nbits >= 8) {
        w->block[w->blen++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nbits -= 8;
        if (w->blen == 255)
            flush_block(w);
    }
}

#define LZW_HASH 5003

/* LZW-compresses indexes (8-bit codes, min code size 8) as GIF sub-blocks. */
static int lzw_encode(const uint8_t *idx, size_t n, struct buf *b)
{
    const unsigned min_size = 8, clear = 1u << min_size, eoi = clear + 1;
    int32_t *hkey = malloc(LZW_HASH * sizeof(int32_t));
    uint16_t *hcode = malloc(LZW_HASH * sizeof(uint16_t));
    if (!hkey || !hcode) {
        free(hkey);
        free(hcode);
        return -ENOMEM;
    }
    struct lzw_out w = {b, {0}, 0, 0, 0, 0};
    uint8_t mcs = (uint8_t)min_size;
    w.err |= buf_append(b, &mcs, 1);
    unsigned size = min_size + 1, next = eoi + 1;
    for (int i = 0; i < LZW_HASH; i++)
        hkey[i] = -1;
    put_code(&w, clear, size);
    if (n == 0) {
        put_code(&w, eoi, size);
    } else {
        unsigned prefix = idx[0];
        for (size_t i = 1; i < n; i++) {
            unsigned c = idx[i];
            int32_t key = (int32_t)(prefix << 8 | c);
            unsigned h = (unsigned)(((unsigned)key * 2654435761u) % LZW_HASH);
            while (hkey[h] != -1 && hkey[h] != key)
                h = (h + 1) % LZW_HASH;
            if (hkey[h] == key) {
                prefix = hcode[h];
                continue;
            }
            put_code(&w, prefix, size);
            if (next < 4096) {
                hkey[h] = key;
                hcode[h] = (uint16_t)next++;
                if (next > (1u << size) && size < 12)
                    size++;
            } else {
                put_code(&w, clear, size);
                for (int k = 0; k < LZW_HASH; k++)
                    hkey[k] = -1;
                size = min_size + 1;
                next = eoi + 1;
            }
            prefix = c;
        }
        put_code(&w, prefix, size);
        put_code(&w, eoi, size);
    }
    if (w.nbits)
        put_code(&w, 0, 8 - w.nbits);
    flush_block(&w);
    uint8_t term = 0;
    w.err |= buf_append(b, &term, 1);
    free(hkey);
    free(hcode);
    return w.err ? -ENOMEM : 0;
}

/* 6x7x6 colour cube (252 entries) + 4 grays, or 256 grays. */
static void palette(bool colour, uint8_t pal[768])
{
    if (!colour) {
        for (int i = 0; i < 256; i++)
            pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
        return;
    }
    int k = 0;
    for (int r = 0; r < 6; r++)
        for (int g = 0; g < 7; g++)
            for (int bb = 0; bb < 6; bb++, k++) {
                pal[3 * k] = (uint8_t)(r * 255 / 5);
                pal[3 * k + 1] = (uint8_t)(g * 255 / 6);
                pal[3 * k + 2] = (uint8_t)(bb * 255 / 5);
            }
    for (; k < 256; k++)
        pal[3 * k] = pal[3 * k + 1] = pal[3 * k + 2] = 0;
}

static void to_indexes(const struct image8 *im, uint8_t *idx)
{
    size_t n = (size_t)im->w * im->h;
    if (im->channels == 1) {
        memcpy(idx, im->px, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = im->px + 3 * i;
        unsigned r = (p[0] * 5 + 127) / 255, g = (p[1] * 6 + 127) / 255, b = (p[2] * 5 + 127) / 255;
        idx[i] = (uint8_t)(r * 42 + g * 6 + b);
    }
}

int img_encode_gif(const struct image8 *frames, unsigned n, unsigned delay_cs, struct buf *out)
{
    if (n == 0)
        return -EINVAL;
    unsigned w = frames[0].w, h = frames[0].h;
    bool colour = false;
    for (unsigned i = 0; i < n; i++) {
        if (frames[i].w != w || frames[i].h != h)
            return -EINVAL;
        colour |= frames[i].channels == 3;
    }
    if (w > 65535 || h > 65535)
        return -E2BIG;
    int r = buf_append(out, "GIF89a", 6);
    uint8_t lsd[7] = {(uint8_t)w, (uint8_t)(w >> 8), (uint8_t)h, (uint8_t)(h >> 8), 0xF7, 0, 0};
    r |= buf_append(out, lsd, 7);
    uint8_t pal[768];
    palette(colour, pal);
    r |= buf_append(out, pal, 768);
    if (n > 1) {
        static const uint8_t loop[19] = {0x21, 0xFF, 0x0B, 'N', 'E', 'T', 'S', 'C', 'A', 'P',
                                         'E',  '2',  '.',  '0', 0x03, 0x01, 0x00, 0x00, 0x00};
        r |= buf_append(out, loop, sizeof(loop));
    }
    uint8_t *idx = malloc((size_t)w * h);
    if (!idx)
        return -ENOMEM;
    for (unsigned i = 0; i < n && r == 0; i++) {
        uint8_t gce[8] = {0x21, 0xF9, 0x04, 0x00, (uint8_t)delay_cs, (uint8_t)(delay_cs >> 8), 0, 0};
        r |= buf_append(out, gce, 8);
        uint8_t desc[10] = {0x2C, 0, 0, 0, 0, (uint8_t)w, (uint8_t)(w >> 8), (uint8_t)h,
                            (uint8_t)(h >> 8), 0};
        r |= buf_append(out, desc, 10);
        struct image8 im = frames[i];
        if (colour && im.channels == 1) {
            /* gray frame in a colour GIF: expand */
            uint8_t *rgb = malloc((size_t)w * h * 3);
            if (!rgb) {
                r = -ENOMEM;
                break;
            }
            for (size_t k = 0; k < (size_t)w * h; k++)
                rgb[3 * k] = rgb[3 * k + 1] = rgb[3 * k + 2] = im.px[k];
            struct image8 c3 = {w, h, 3, rgb};
            to_indexes(&c3, idx);
            free(rgb);
        } else {
            to_indexes(&im, idx);
        }
        if (r == 0)
            r = lzw_encode(idx, (size_t)w * h, out);
    }
    free(idx);
    if (r == 0)
        r = buf_putc(out, 0x3B);
    return r ? (r < 0 ? r : -ENOMEM) : 0;
}

int img_encode(const struct image8 *im, enum img_format f, unsigned quality, struct buf *out)
{
    switch (f) {
    case IMG_PNG:
        return encode_png(im, out);
    case IMG_GIF:
        return img_encode_gif(im, 1, 0, out);
    case IMG_WEBP:
        return encode_webp(im, quality, out);
    case IMG_JPEG:
    default:
        return encode_jpeg(im, quality, out);
    }
}
