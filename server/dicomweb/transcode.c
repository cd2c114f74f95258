/* transcode.c - see transcode.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/ts.h"
#include "dicom/write.h"
#include "dicomweb/transcode.h"
#include "core/banned.h"

static bool is_native(const char *ts)
{
    const struct ts_info *t = ts_lookup(ts);
    return t && !(t->flags & TS_ENCAPS);
}

bool transcode_can_decode(const char *ts)
{
    return is_native(ts);
}

const char *transcode_as_stored(const char *stored_ts)
{
    return strcmp(stored_ts, UID_IMPLICIT_LE) == 0 ? UID_EXPLICIT_LE : stored_ts;
}

bool transcode_possible(const char *from_ts, const char *to_ts, const struct layout *l)
{
    (void)l;
    if (!strcmp(from_ts, to_ts))
        return strcmp(to_ts, UID_IMPLICIT_LE) != 0;
    if (!strcmp(to_ts, UID_EXPLICIT_LE))
        return is_native(from_ts) || !(l->flags & LAYOUT_PIXELS);
    return false;
}

int transcode_instance(int fd, const struct layout *l, const char *to_ts, unsigned quality,
                       uint64_t max_bytes, struct buf *out, char *err, size_t err_cap)
{
    (void)quality;
    (void)max_bytes;
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
    r = dcm_write_part10(f, fd, l, to_ts, &px, out);
    dcm_file_free(f);
    if (r < 0)
        snprintf(err, err_cap, "writing the converted object failed (%d)", r);
    return r;
}

/* Packs 1-bit pixels starting at first_bit into bytes starting at bit 0
 * (DICOM bit order: first pixel in the least significant bit). */
static int repack_bits(const uint8_t *in, size_t in_len, unsigned first_bit, uint64_t n_bits,
                       struct buf *out)
{
    size_t n = (size_t)((n_bits + 7) / 8);
    int r = buf_reserve(out, n);
    if (r < 0)
        return r;
    uint8_t *o = (uint8_t *)out->data + out->len;
    memset(o, 0, n);
    for (uint64_t i = 0; i < n_bits; i++) {
        uint64_t src = i + first_bit;
        if (src / 8 >= in_len)
            break;
        if (in[src / 8] >> (src % 8) & 1)
            o[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    out->len += n;
    out->data[out->len] = 0;
    return 0;
}

int transcode_frame_native(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                           struct buf *out, char photometric[20], char *err, size_t err_cap)
{
    snprintf(photometric, 20, "%s", l->photometric);
    if (l->flags & LAYOUT_ENCAPS) {
        snprintf(err, err_cap, "decoding %s frames is not available", l->ts_uid);
        return -ENOTSUP;
    }
    uint64_t fb = layout_native_frame_bytes(l);
    if (fb > max_bytes) {
        snprintf(err, err_cap, "frame larger than the decoded-size limit");
        return -E2BIG;
    }
    struct buf raw;
    buf_init(&raw, 0);
    unsigned first_bit = 0;
    int r = frame_read(fd, l, index, &raw, &first_bit);
    if (r == 0) {
        if (l->bits_alloc == 1) {
            r = repack_bits((const uint8_t *)raw.data, raw.len, first_bit,
                            (uint64_t)l->rows * l->cols * l->spp, out);
        } else {
            if (l->flags & LAYOUT_BIG) {
                unsigned unit = l->bits_alloc / 8;
                uint8_t *v = (uint8_t *)raw.data;
                for (size_t i = 0; unit > 1 && i + unit <= raw.len; i += unit)
                    for (unsigned a = 0, z = unit - 1; a < z; a++, z--) {
                        uint8_t t = v[i + a];
                        v[i + a] = v[i + z];
                        v[i + z] = t;
                    }
            }
            r = buf_append(out, raw.data, raw.len);
        }
    } else {
        snprintf(err, err_cap, "cannot read frame %u (%d)", index + 1, r);
    }
    buf_release(&raw);
    return r;
}

int transcode_frame_to(int fd, const struct layout *l, uint32_t index, const char *to_ts,
                       unsigned quality, uint64_t max_bytes, struct buf *out, char *err,
                       size_t err_cap)
{
    (void)fd;
    (void)l;
    (void)index;
    (void)quality;
    (void)max_bytes;
    (void)out;
    snprintf(err, err_cap, "encoding frames to %s is not available", to_ts);
    return -ENOTSUP;
}
