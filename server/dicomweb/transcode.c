/* transcode.c - see transcode.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/ts.h"
#include "dicom/write.h"
#include "dicomweb/transcode.h"
#include "sandbox/sandbox.h"
#include "core/banned.h"

static struct sandbox *g_sandbox; /* set once at start, before any request */

void transcode_set_sandbox(struct sandbox *s)
{
    g_sandbox = s;
}

static bool is_native(const char *ts)
{
    const struct ts_info *t = ts_lookup(ts);
    return t && !(t->flags & TS_ENCAPS);
}

static bool is_lossy(const char *ts)
{
    const struct ts_info *t = ts_lookup(ts);
    return t && (t->flags & TS_LOSSY);
}

bool transcode_can_decode(const char *ts)
{
    return is_native(ts) || codec_can_decode(ts);
}

const char *transcode_as_stored(const char *stored_ts)
{
    return strcmp(stored_ts, UID_IMPLICIT_LE) == 0 ? UID_EXPLICIT_LE : stored_ts;
}

static void image_of(const struct layout *l, struct codec_image *img)
{
    memset(img, 0, sizeof(*img));
    img->rows = l->rows;
    img->cols = l->cols;
    img->spp = l->spp;
    img->bits_alloc = l->bits_alloc;
    img->bits_stored = l->bits_stored ? l->bits_stored : l->bits_alloc;
    img->high_bit = l->high_bit;
    img->pixrep = l->pixrep;
    img->planar = l->planar;
    img->photometric = l->photometric;
    img->big_endian = (l->flags & LAYOUT_BIG) != 0;
    img->float_data = l->pixel_tag == TAG_FLOAT_PIXEL_DATA || l->pixel_tag == TAG_DOUBLE_FLOAT_PIXEL_DATA;
}

/* Can the pixels of l be encoded in to_ts at all? */
static bool encodable(const struct layout *l, const char *to_ts)
{
    if (!codec_can_encode(to_ts))
        return false;
    if (l->pixel_tag != TAG_PIXEL_DATA || l->bits_alloc < 8)
        return false;
    if (!strcmp(to_ts, "1.2.840.10008.1.2.4.50"))
        return l->bits_alloc == 8 && (l->spp == 1 || l->spp == 3);
    if (!strcmp(to_ts, "1.2.840.10008.1.2.5"))
        return l->bits_alloc == 8 || l->bits_alloc == 16 || l->bits_alloc == 32;
    return l->bits_alloc <= 16;
}

bool transcode_possible(const char *from_ts, const char *to_ts, const struct layout *l)
{
    if (!strcmp(to_ts, UID_IMPLICIT_LE))
        return false;
    if (!strcmp(from_ts, to_ts))
        return true;
    if (!(l->flags & LAYOUT_PIXELS))
        return !strcmp(to_ts, UID_EXPLICIT_LE); /* no pixel data: any native rewrite */
    bool decodable = is_native(from_ts) || codec_can_decode(from_ts);
    if (!strcmp(to_ts, UID_EXPLICIT_LE))
        return decodable && (is_native(from_ts) || (l->flags & LAYOUT_FRAMES_OK));
    return decodable && (l->flags & LAYOUT_FRAMES_OK) && encodable(l, to_ts);
}

/* One frame as the canonical frame of codec.h (interleaved, 1-bit
 * unpacked); photometric receives its colour space. */
static int canonical_frame(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                           struct buf *out, struct codec_out *info, char *err, size_t err_cap)
{
    struct codec_image img;
    image_of(l, &img);
    size_t fs = codec_frame_size(&img);
    if (!fs) {
        snprintf(err, err_cap, "the image description is unusable");
        return -ENOTSUP;
    }
    if (fs > max_bytes) {
        snprintf(err, err_cap, "a frame needs %zu decoded bytes, over the limit", fs);
        return -E2BIG;
    }
    struct buf raw;
    buf_init(&raw, (size_t)2 << 30);
    unsigned first_bit = 0;
    int r = frame_read(fd, l, index, &raw, &first_bit);
    if (r < 0) {
        snprintf(err, err_cap, "cannot read frame %u (%d)", index + 1, r);
        buf_release(&raw);
        return r;
    }
    r = buf_reserve(out, fs);
    if (r == 0) {
        const char *ts = l->ts_uid[0] ? l->ts_uid : UID_IMPLICIT_LE;
        if (g_sandbox && sandbox_wanted(ts))
            r = sandbox_decode(g_sandbox, ts, &img, (const uint8_t *)raw.data, raw.len, first_bit,
                               (uint8_t *)out->data + out->len, fs, info, err, err_cap);
        else
            r = codec_decode(ts, &img, (const uint8_t *)raw.data, raw.len, first_bit,
                             (uint8_t *)out->data + out->len, fs, info, err, err_cap);
        if (r == 0) {
            out->len += info->len;
            out->data[out->len] = 0;
        }
    }
    buf_release(&raw);
    return r;
}

int transcode_frame_canonical(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                              struct buf *out, char photometric[20], char *err, size_t err_cap)
{
    struct codec_out info;
    memset(&info, 0, sizeof(info));
    int r = canonical_frame(fd, l, index, max_bytes, out, &info, err, err_cap);
    if (r == 0)
        snprintf(photometric, 20, "%s", info.photometric[0] ? info.photometric : l->photometric);
    return r;
}

static char *lossy_ratio(uint64_t raw, uint64_t coded, char buf[24])
{
    double ratio = coded ? (double)raw / (double)coded : 1.0;
    snprintf(buf, 24, "%.2f", ratio);
    return buf;
}

int transcode_instance(int fd, const struct layout *l, const char *to_ts, unsigned quality,
                       uint64_t max_bytes, struct buf *out, char *err, size_t err_cap)
{
    const char *from = l->ts_uid[0] ? l->ts_uid : UID_IMPLICIT_LE;
    if (!transcode_possible(from, to_ts, l)) {
        snprintf(err, err_cap, "cannot convert %s to %s", from, to_ts);
        return -ENOTSUP;
    }
    struct dcm_file *f = NULL;
    int r = dcm_parse_fd(fd, NULL, &f, err, err_cap);
    if (r < 0)
        return r;
    struct dcm_pixels px;
    memset(&px, 0, sizeof(px));
    px.kind = PIX_KEEP;
    px.ov.planar = -1;
    px.ov.bits_alloc = -1;
    px.ov.bits_stored = -1;
    px.ov.high_bit = -1;
    bool to_native = is_native(to_ts);
    bool pixels = (l->flags & LAYOUT_PIXELS) && l->pixel_tag == TAG_PIXEL_DATA;
    struct buf native;
    buf_init(&native, max_bytes + 1);
    uint8_t **frames = NULL;
    size_t *lens = NULL;
    char ratio[24];
    struct codec_out info;
    memset(&info, 0, sizeof(info));
    if (!pixels || (to_native && is_native(from))) {
        px.kind = PIX_KEEP; /* byte order / VR / deflate: the writer converts */
    } else if (to_native) {
        /* compressed -> native: decode every frame */
        for (uint32_t i = 0; i < l->n_frames && r == 0; i++) {
            r = canonical_frame(fd, l, i, max_bytes - native.len, &native, &info, err, err_cap);
        }
        if (r == 0) {
            px.kind = PIX_NATIVE;
            px.native = (const uint8_t *)native.data;
            px.native_len = native.len;
            px.ov.photometric = info.photometric[0] ? info.photometric : NULL;
            px.ov.planar = l->spp > 1 ? 0 : -1;
            if (is_lossy(from))
                px.ov.lossy = "01";
        }
    } else {
        /* -> compressed: canonical frames, encoded one by one */
        frames = calloc(l->n_frames, sizeof(*frames));
        lens = calloc(l->n_frames, sizeof(*lens));
        if (!frames || !lens)
            r = -ENOMEM;
        struct codec_image img;
        image_of(l, &img);
        uint64_t raw_total = 0, coded_total = 0;
        struct codec_encode_opts eo = {quality};
        for (uint32_t i = 0; i < l->n_frames && r == 0; i++) {
            buf_reset(&native);
            struct codec_out din;
            memset(&din, 0, sizeof(din));
            r = canonical_frame(fd, l, i, max_bytes, &native, &din, err, err_cap);
            if (r < 0)
                break;
            struct codec_image eimg = img;
            eimg.photometric = din.photometric[0] ? din.photometric : l->photometric;
            eimg.planar = 0;
            eimg.big_endian = false;
            eimg.pixrep = din.pixrep;
            if (din.bits_alloc)
                eimg.bits_alloc = din.bits_alloc;
            r = codec_encode(to_ts, &eimg, (const uint8_t *)native.data, native.len, &eo,
                             &frames[i], &lens[i], &info, err, err_cap);
            raw_total += native.len;
            coded_total += lens[i];
        }
        if (r == 0) {
            px.kind = PIX_ENCAPS;
            px.frames = (const uint8_t *const *)frames;
            px.frame_lens = lens;
            px.n_frames = l->n_frames;
            px.ov.photometric = info.photometric[0] ? info.photometric : NULL;
            px.ov.planar = l->spp > 1 ? 0 : -1;
            if (info.bits_stored && info.bits_stored != (l->bits_stored ? l->bits_stored : l->bits_alloc)) {
                px.ov.bits_stored = info.bits_stored;
                px.ov.high_bit = info.bits_stored - 1;
            }
            if (is_lossy(to_ts)) {
                /* PS3.3 C.7.6.1.1.5: the compression history */
                px.ov.lossy = "01";
                px.ov.lossy_ratio = lossy_ratio(raw_total, coded_total, ratio);
                px.ov.lossy_method = "ISO_10918_1";
            } else if (is_lossy(from)) {
                px.ov.lossy = "01";
            }
        }
    }
    if (r == 0)
        r = dcm_write_part10(f, fd, l, to_ts, &px, out);
    if (r < 0 && !err[0])
        snprintf(err, err_cap, "writing the converted object failed (%d)", r);
    if (frames)
        for (uint32_t i = 0; i < l->n_frames; i++)
            free(frames[i]);
    free(frames);
    free(lens);
    buf_release(&native);
    dcm_file_free(f);
    return r;
}

/* Packs 1-bit pixels (one byte each) into bytes from bit 0 (DICOM order:
 * the first pixel in the least significant bit). */
static int pack_bits(const uint8_t *in, size_t n_px, struct buf *out)
{
    size_t n = (n_px + 7) / 8;
    int r = buf_reserve(out, n);
    if (r < 0)
        return r;
    uint8_t *o = (uint8_t *)out->data + out->len;
    memset(o, 0, n);
    for (size_t i = 0; i < n_px; i++)
        if (in[i])
            o[i / 8] |= (uint8_t)(1u << (i % 8));
    out->len += n;
    out->data[out->len] = 0;
    return 0;
}

int transcode_frame_native(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                           struct buf *out, char photometric[20], char *err, size_t err_cap)
{
    snprintf(photometric, 20, "%s", l->photometric);
    if (!(l->flags & LAYOUT_ENCAPS) && l->bits_alloc != 1) {
        /* native (possibly deflated): the stored bytes in the stored sample
         * layout (Planar Configuration kept), little endian */
        uint64_t fb = layout_native_frame_bytes(l);
        if (fb > max_bytes) {
            snprintf(err, err_cap, "frame larger than the decoded-size limit");
            return -E2BIG;
        }
        size_t at = out->len;
        int r = frame_read(fd, l, index, out, NULL);
        if (r < 0) {
            snprintf(err, err_cap, "cannot read frame %u (%d)", index + 1, r);
            return r;
        }
        unsigned unit = l->bits_alloc / 8;
        if ((l->flags & LAYOUT_BIG) && unit > 1) {
            uint8_t *v = (uint8_t *)out->data + at;
            size_t len = out->len - at;
            for (size_t i = 0; i + unit <= len; i += unit)
                for (unsigned a = 0, z = unit - 1; a < z; a++, z--) {
                    uint8_t t = v[i + a];
                    v[i + a] = v[i + z];
                    v[i + z] = t;
                }
        }
        return 0;
    }
    struct buf canon;
    buf_init(&canon, max_bytes + 1);
    int r = transcode_frame_canonical(fd, l, index, max_bytes, &canon, photometric, err, err_cap);
    if (r == 0) {
        if (l->bits_alloc == 1)
            r = pack_bits((const uint8_t *)canon.data, canon.len, out);
        else
            r = buf_append(out, canon.data, canon.len);
    }
    buf_release(&canon);
    return r;
}

bool transcode_frame_possible(const struct layout *l, const char *to_ts)
{
    const char *from = l->ts_uid[0] ? l->ts_uid : UID_IMPLICIT_LE;
    return (l->flags & LAYOUT_FRAMES_OK) && transcode_can_decode(from) && encodable(l, to_ts);
}

int transcode_frame_to(int fd, const struct layout *l, uint32_t index, const char *to_ts,
                       unsigned quality, uint64_t max_bytes, struct buf *out, char *err,
                       size_t err_cap)
{
    if (!transcode_frame_possible(l, to_ts)) {
        snprintf(err, err_cap, "frames of %s cannot be encoded to %s", l->ts_uid, to_ts);
        return -ENOTSUP;
    }
    struct buf canon;
    buf_init(&canon, max_bytes + 1);
    struct codec_out din;
    memset(&din, 0, sizeof(din));
    int r = canonical_frame(fd, l, index, max_bytes, &canon, &din, err, err_cap);
    if (r == 0) {
        struct codec_image img;
        image_of(l, &img);
        img.photometric = din.photometric[0] ? din.photometric : l->photometric;
        img.planar = 0;
        img.big_endian = false;
        img.pixrep = din.pixrep;
        if (din.bits_alloc)
            img.bits_alloc = din.bits_alloc;
        struct codec_encode_opts eo = {quality};
        uint8_t *coded = NULL;
        size_t coded_len = 0;
        struct codec_out info;
        r = codec_encode(to_ts, &img, (const uint8_t *)canon.data, canon.len, &eo, &coded,
                         &coded_len, &info, err, err_cap);
        if (r == 0)
            r = buf_append(out, coded, coded_len);
        free(coded);
    }
    buf_release(&canon);
    return r;
}
