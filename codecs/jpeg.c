/*
 * jpeg.c - JPEG (ISO 10918) frames: libjpeg-turbo decodes and encodes 8-bit
 * DCT JPEG; GDCM (through gdcm_shim.cc) decodes 12-bit DCT and lossless
 * JPEG (processes 14 and 14 SV1).
 *
 * Colour: like GDCM, no colour conversion is ever applied. A YCbCr JPEG
 * comes out as YBR_FULL with its chroma upsampled; an RGB JPEG (Adobe
 * transform 0, or no JFIF/Adobe marker and a dataset saying RGB) stays RGB
 * (pydicom's SC_jpeg_no_color_transform.dcm is such a file).
 *
 * GDCM is built with assert() enabled and aborts on some malformed headers,
 * so every codestream passed to it is first checked by jpeg_scan(): strict
 * marker structure up to the first SOS, a supported SOF and precision,
 * dimensions and components equal to the dataset's, JFIF major version 1,
 * Adobe transform 0 or 1.
 */
#include "core/common.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "codec_priv.h"
#include "gdcm_shim.h"
#include "core/banned.h"

/* ---- marker scan (up to the first SOS) ---- */

struct jpeg_hdr {
    unsigned sof; /* SOFn marker code, 0 if none */
    unsigned precision, width, height, ncomp;
    uint8_t h[4], v[4];
    bool jfif, adobe;
    unsigned jfif_major, adobe_transform;
    bool irregular; /* something libjpeg would warn about (GDCM aborts) */
};

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Returns 0 when an SOF and a complete SOS header were found. */
static int jpeg_scan(const uint8_t *d, size_t len, struct jpeg_hdr *h)
{
    memset(h, 0, sizeof(*h));
    if (len < 4 || d[0] != 0xFF || d[1] != 0xD8)
        return -EBADMSG;
    size_t pos = 2;
    for (;;) {
        if (pos >= len)
            return -EBADMSG;
        if (d[pos] != 0xFF) {
            h->irregular = true; /* extraneous bytes before a marker */
            while (pos < len && d[pos] != 0xFF)
                pos++;
            continue;
        }
        while (pos < len && d[pos] == 0xFF)
            pos++;
        if (pos >= len)
            return -EBADMSG;
        unsigned m = d[pos++];
        if (m == 0x00) {
            h->irregular = true;
            continue;
        }
        if (m == 0xD8 || m == 0xD9)
            return -EBADMSG; /* SOI again or EOI before any scan */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7))
            continue; /* standalone markers */
        if (len - pos < 2)
            return -EBADMSG;
        unsigned seg = be16(d + pos);
        if (seg < 2 || seg > len - pos)
            return -EBADMSG;
        const uint8_t *p = d + pos + 2;
        size_t n = seg - 2;
        if (m == 0xE0 && n >= 5 && memcmp(p, "JFIF", 5) == 0) {
            h->jfif = true;
            if (n >= 14) {
                h->jfif_major = p[5];
                if (p[5] != 1)
                    h->irregular = true;
            }
        } else if (m == 0xEE && n >= 12 && memcmp(p, "Adobe", 5) == 0) {
            h->adobe = true;
            h->adobe_transform = p[11];
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (h->sof || n < 6)
                return -EBADMSG;
            h->sof = m;
            h->precision = p[0];
            h->height = be16(p + 1);
            h->width = be16(p + 3);
            h->ncomp = p[5];
            if (h->ncomp == 0 || h->ncomp > 4 || n < 6 + 3u * h->ncomp)
                return -EBADMSG;
            for (unsigned c = 0; c < h->ncomp; c++) {
                h->h[c] = p[6 + 3 * c + 1] >> 4;
                h->v[c] = p[6 + 3 * c + 1] & 15;
                if (h->h[c] < 1 || h->h[c] > 4 || h->v[c] < 1 || h->v[c] > 4)
                    return -EBADMSG;
            }
        } else if (m == 0xDA) {
            if (!h->sof || n < 1 || n < 1 + 2u * p[0] + 3 || pos + seg >= len)
                return -EBADMSG;
            if (h->adobe && h->ncomp == 3 && h->adobe_transform > 1)
                h->irregular = true; /* libjpeg warns JWRN_ADOBE_XFORM */
            return 0;
        }
        pos += seg;
    }
}

/* ---- libjpeg-turbo ---- */

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    bool eof;
};

static void jerr_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jerr_emit(j_common_ptr c, int level)
{
    struct jerr *e = (struct jerr *)c->err;
    if (level < 0) {
        c->err->num_warnings++;
        if (c->err->msg_code == JWRN_JPEG_EOF)
            e->eof = true;
        if (!e->msg[0])
            (*c->err->format_message)(c, e->msg);
    }
}

static void jerr_output(j_common_ptr c)
{
    (void)c;
}

static void jerr_init(struct jerr *e)
{
    jpeg_std_error(&e->pub);
    e->pub.error_exit = jerr_exit;
    e->pub.emit_message = jerr_emit;
    e->pub.output_message = jerr_output;
    e->msg[0] = 0;
    e->eof = false;
}

/* The photometric of undecoded-colour output (see the file comment). */
static const char *colour_out(const struct codec_image *img, const struct jpeg_hdr *h,
                              J_COLOR_SPACE cs)
{
    if (img->spp == 1)
        return img->photometric;
    if (cs == JCS_RGB)
        return "RGB";
    if (h->jfif || (h->adobe && h->adobe_transform == 1) || codec_pi_is_ybr(img))
        return "YBR_FULL";
    return img->photometric; /* no marker: trust the dataset (usually RGB) */
}

static int turbo_decode(const struct codec_image *img, const struct jpeg_hdr *hdr,
                        const uint8_t *data, size_t len, uint8_t *out, struct codec_out *info,
                        char *err, size_t err_cap)
{
    struct jpeg_decompress_struct cinfo;
    struct jerr je;
    unsigned nb = codec_sample_bytes(img);
    size_t stride = (size_t)img->cols * img->spp;
    memset(&cinfo, 0, sizeof(cinfo));
    jerr_init(&je);
    cinfo.err = &je.pub;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: %s", je.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK)
        ERREXIT(&cinfo, JERR_NO_IMAGE);
    if (cinfo.image_width != img->cols || cinfo.image_height != img->rows ||
        cinfo.num_components != img->spp || cinfo.data_precision != 8) {
        jpeg_destroy_decompress(&cinfo);
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: %ux%u x%d (%d bits) != dataset",
                          cinfo.image_width, cinfo.image_height, cinfo.num_components,
                          cinfo.data_precision);
    }
    J_COLOR_SPACE cs = cinfo.jpeg_color_space;
    if (img->spp == 1) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (cs == JCS_YCbCr || cs == JCS_RGB) {
        cinfo.out_color_space = cs; /* no conversion, as GDCM */
    } else {
        jpeg_destroy_decompress(&cinfo);
        return codec_fail(-ENOTSUP, err, err_cap, "jpeg: colour space %d", (int)cs);
    }
    cinfo.dct_method = JDCT_ISLOW;
    /* IJG 6b (GDCM) replicates chroma for 1x2 sampling; turbo would smooth */
    for (int c = 0; c < cinfo.num_components; c++)
        if (cinfo.comp_info[c].h_samp_factor == cinfo.max_h_samp_factor &&
            cinfo.comp_info[c].v_samp_factor * 2 == cinfo.max_v_samp_factor)
            cinfo.do_fancy_upsampling = FALSE;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != img->cols || cinfo.output_height != img->rows ||
        cinfo.output_components != img->spp)
        ERREXIT(&cinfo, JERR_IMAGE_TOO_BIG);
    JSAMPARRAY tmp = NULL;
    if (nb != 1)
        tmp = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)stride, 1);
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW row = nb == 1 ? out + y * stride : tmp[0];
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1)
            ERREXIT(&cinfo, JERR_INPUT_EMPTY);
        if (nb != 1)
            for (size_t i = 0; i < stride; i++)
                codec_put(out + y * stride * nb, i, nb, row[i]);
        if (je.eof)
            ERREXIT(&cinfo, JERR_INPUT_EOF);
    }
    jpeg_finish_decompress(&cinfo);
    /* GDCM tolerates one warning (e.g. Invalid SOS parameters), not more */
    if (je.eof || je.pub.num_warnings > 1) {
        jpeg_destroy_decompress(&cinfo);
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: corrupt data (%s)", je.msg);
    }
    jpeg_destroy_decompress(&cinfo);
    info->len = stride * img->rows * nb;
    info->bits_stored = 8 < img->bits_stored ? 8 : img->bits_stored;
    codec_set_photometric(info, colour_out(img, hdr, cs));
    return 0;
}

static int gdcm_decode(const struct codec_image *img, const struct jpeg_hdr *hdr,
                       const uint8_t *data, size_t len, uint8_t *out, size_t out_cap,
                       struct codec_out *info, char *err, size_t err_cap)
{
    bool lossless = hdr->sof == 0xC3;
    if (hdr->irregular)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: malformed marker structure");
    if (hdr->sof > 0xC3)
        return codec_fail(-ENOTSUP, err, err_cap, "jpeg: SOF%u not supported", hdr->sof - 0xC0);
    if (lossless ? (hdr->precision < 2 || hdr->precision > 16)
                 : (hdr->precision != 8 && hdr->precision != 12))
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: precision %u", hdr->precision);
    if (hdr->precision > img->bits_alloc || img->bits_alloc > 16)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: %u-bit data in %u-bit container",
                          hdr->precision, img->bits_alloc);
    /* GDCM accepts a stream that just stops (one "premature end" warning
     * is tolerated), so a truncated frame would decode to grey: insist on
     * the EOI marker in the last bytes (padding 00 or FF may follow). */
    bool eoi = false;
    for (size_t k = 0; k < 16 && k + 4 <= len && !eoi; k++)
        eoi = data[len - k - 2] == 0xFF && data[len - k - 1] == 0xD9;
    if (!eoi)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: no EOI marker (truncated?)");
    struct gdcm_shim_image g = {
        .rows = img->rows,
        .cols = img->cols,
        .spp = img->spp,
        .bits_alloc = img->bits_alloc,
        .bits_stored = img->bits_stored,
        .high_bit = img->high_bit,
        .pixrep = img->pixrep,
        .planar = img->planar,
        .photometric = img->photometric,
    };
    size_t got = 0;
    unsigned sb = 0;
    int r = gdcm_shim_jpeg_decode(&g, data, len, out, out_cap, &got, &sb, err, err_cap);
    if (r < 0)
        return r;
    unsigned nb = codec_sample_bytes(img);
    size_t n = codec_pixels(img) * img->spp;
    if (sb > nb || got != n * sb)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: decoder gave %zu bytes", got);
    if (sb < nb) /* widen in place, from the end */
        for (size_t i = n; i-- > 0;)
            codec_put(out, i, nb, out[i]);
    info->len = n * nb;
    info->bits_stored = hdr->precision < img->bits_stored ? hdr->precision : img->bits_stored;
    J_COLOR_SPACE cs = JCS_YCbCr;
    if (hdr->adobe && hdr->adobe_transform == 0)
        cs = JCS_RGB;
    codec_set_photometric(info,
                          lossless && !hdr->jfif ? img->photometric : colour_out(img, hdr, cs));
    return 0;
}

int jpeg_decode(CODEC_DECODE_ARGS)
{
    struct jpeg_hdr h;
    if (jpeg_scan(data, len, &h) < 0)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: no valid header");
    if (h.width != img->cols || h.height != img->rows || h.ncomp != img->spp)
        return codec_fail(-EBADMSG, err, err_cap, "jpeg: %ux%u x%u != dataset %ux%u x%u", h.width,
                          h.height, h.ncomp, img->cols, img->rows, img->spp);
    bool dct8 = h.precision == 8 &&
                (h.sof == 0xC0 || h.sof == 0xC1 || h.sof == 0xC2 || h.sof == 0xC9 || h.sof == 0xCA);
    if (dct8 && img->bits_alloc <= 16)
        return turbo_decode(img, &h, data, len, out, info, err, err_cap);
    return gdcm_decode(img, &h, data, len, out, out_cap, info, err, err_cap);
}

/* ---- encoder (8-bit baseline, libjpeg-turbo) ---- */

int jpeg_encode(CODEC_ENCODE_ARGS)
{
    if (img->bits_alloc != 8 || img->bits_stored > 8)
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG baseline takes 8-bit data only");
    size_t cols = img->cols, npix = codec_pixels(img);
    bool sub422 = img->spp == 3 && len < npix * 3; /* stored YBR_FULL_422: Y0 Y1 Cb Cr */
    bool ycc = img->spp == 3 && (codec_pi_is_ybr(img) || sub422);
    if (sub422 && (cols & 1))
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG: YBR_FULL_422 with odd columns");
    if (img->spp == 3 && !ycc && !codec_pi_is(img, "RGB"))
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG: photometric %s not encodable",
                          img->photometric ? img->photometric : "");
    if (ycc && !sub422 && !codec_pi_is(img, "YBR_FULL") && !codec_pi_is(img, "YBR_FULL_422"))
        return codec_fail(-ENOTSUP, err, err_cap, "JPEG: photometric %s not encodable",
                          img->photometric);
    unsigned q = o->quality ? o->quality : 90;
    if (q > 100)
        q = 100;

    struct jpeg_compress_struct cinfo;
    struct jerr je;
    unsigned char *volatile mem = NULL;
    unsigned long mem_len = 0;
    uint8_t *volatile rowbuf = NULL;
    memset(&cinfo, 0, sizeof(cinfo));
    jerr_init(&je);
    cinfo.err = &je.pub;
    if (setjmp(je.jb)) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        free(rowbuf);
        return codec_fail(-EBADMSG, err, err_cap, "jpeg encode: %s", je.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&mem, &mem_len);
    cinfo.image_width = img->cols;
    cinfo.image_height = img->rows;
    cinfo.input_components = img->spp;
    cinfo.in_color_space = img->spp == 1 ? JCS_GRAYSCALE : ycc ? JCS_YCbCr : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, (int)q, TRUE);
    cinfo.dct_method = JDCT_ISLOW;
    if (img->spp == 3) {
        jpeg_set_colorspace(&cinfo, JCS_YCbCr);
        /* declared YBR_FULL_422: chroma halved horizontally */
        cinfo.comp_info[0].h_samp_factor = 2;
        cinfo.comp_info[0].v_samp_factor = 1;
        cinfo.comp_info[1].h_samp_factor = cinfo.comp_info[2].h_samp_factor = 1;
        cinfo.comp_info[1].v_samp_factor = cinfo.comp_info[2].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = cols * img->spp;
    if (sub422) {
        rowbuf = malloc(stride);
        if (!rowbuf)
            ERREXIT(&cinfo, JERR_OUT_OF_MEMORY);
    }
    while (cinfo.next_scanline < cinfo.image_height) {
        size_t y = cinfo.next_scanline;
        JSAMPROW row;
        if (sub422) {
            /* PS3.3 C.7.6.3.1.2: Y0 Y1 Cb Cr for each pair of pixels */
            const uint8_t *s = pixels + y * cols * 2;
            for (size_t x = 0; x < cols; x++) {
                const uint8_t *pair = s + (x / 2) * 4;
                rowbuf[x * 3] = pair[x & 1];
                rowbuf[x * 3 + 1] = pair[2];
                rowbuf[x * 3 + 2] = pair[3];
            }
            row = rowbuf;
        } else {
            row = (JSAMPROW)(uintptr_t)(pixels + y * stride);
        }
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(rowbuf);
    *out = mem;
    *out_len = mem_len;
    info->bits_stored = 8;
    codec_set_photometric(info, img->spp == 3 ? "YBR_FULL_422" : img->photometric);
    return 0;
}
