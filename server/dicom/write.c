/* write.c - see write.h. */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dicom/dcm.h"
#include "dicom/dict.h"
#include "dicom/frame_read.h"
#include "dicom/vr.h"
#include "dicom/write.h"
#include "core/banned.h"

struct w {
    const struct dcm_file *f;
    int fd;
    const struct layout *l;
    const struct dcm_pixels *px;
    struct buf *out;
    struct buf tmp;
};

static int put16(struct buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return buf_append(b, x, 2);
}

static int put32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_append(b, x, 4);
}

/* Element header in Explicit VR LE. */
static int put_header(struct buf *b, uint32_t tag, uint16_t vr, uint32_t len)
{
    int r = put16(b, TAG_GROUP(tag));
    r |= put16(b, TAG_ELEM(tag));
    if (TAG_GROUP(tag) == 0xFFFE)
        return r | put32(b, len);
    char n[3];
    vr_name(vr, n);
    r |= buf_append(b, n, 2);
    if (vr_has_long_length(vr)) {
        r |= put16(b, 0);
        r |= put32(b, len);
    } else {
        if (len > 0xFFFF)
            return -E2BIG;
        r |= put16(b, (uint16_t)len);
    }
    return r ? -ENOMEM : 0;
}

/* Pads a string value to even length (space, or NUL for UI). */
static int put_value(struct buf *b, uint32_t tag, uint16_t vr, const uint8_t *v, size_t len)
{
    size_t padded = len + (len & 1);
    uint16_t wvr = vr;
    if (!vr_has_long_length(vr) && padded > 0xFFFF)
        wvr = VR_UN; /* cannot be represented with a 16-bit length */
    int r = put_header(b, tag, wvr, (uint32_t)padded);
    if (r < 0)
        return r;
    if (len)
        r = buf_append(b, v, len);
    if (r == 0 && (len & 1))
        r = buf_putc(b, vr == VR_UI || !vr_is_string(vr) ? '\0' : ' ');
    return r;
}

static int put_string_elem(struct buf *b, uint32_t tag, uint16_t vr, const char *s)
{
    return put_value(b, tag, vr, (const uint8_t *)s, strlen(s));
}

static void swap_units(uint8_t *v, size_t len, unsigned unit)
{
    if (unit <= 1)
        return;
    for (size_t i = 0; i + unit <= len; i += unit)
        for (unsigned a = 0, z = unit - 1; a < z; a++, z--) {
            uint8_t t = v[i + a];
            v[i + a] = v[i + z];
            v[i + z] = t;
        }
}

static const char *override_str(const struct dcm_pixels *px, uint32_t tag)
{
    if (!px)
        return NULL;
    switch (tag) {
    case TAG(0x0028, 0x0004):
        return px->ov.photometric;
    case TAG(0x0028, 0x2110):
        return px->ov.lossy;
    case TAG(0x0028, 0x2112):
        return px->ov.lossy_ratio;
    case TAG(0x0028, 0x2114):
        return px->ov.lossy_method;
    default:
        return NULL;
    }
}

static int write_pixels(struct w *w, const struct dcm_elem *e)
{
    const struct dcm_pixels *px = w->px;
    struct buf *b = w->out;
    int r;
    if (px && px->kind == PIX_NATIVE) {
        uint16_t vr = (w->l && w->l->bits_alloc > 8) ? VR_OW : VR_OB;
        if (e->tag != TAG_PIXEL_DATA)
            vr = e->vr;
        if (px->native_len > 0xFFFFFFFEu)
            return -E2BIG;
        r = put_header(b, e->tag, vr, (uint32_t)(px->native_len + (px->native_len & 1)));
        if (r == 0)
            r = buf_append(b, px->native, px->native_len);
        if (r == 0 && (px->native_len & 1))
            r = buf_putc(b, 0);
        return r;
    }
    if (px && px->kind == PIX_ENCAPS) {
        r = put_header(b, e->tag, VR_OB, DCM_UNDEFINED);
        /* an empty Basic Offset Table: one fragment per frame */
        r |= put_header(b, TAG_ITEM, VR_NONE, 0);
        for (uint32_t i = 0; i < px->n_frames && r == 0; i++) {
            size_t fl = px->frame_lens[i];
            if (fl > 0xFFFFFFFEu)
                return -E2BIG;
            r = put_header(b, TAG_ITEM, VR_NONE, (uint32_t)(fl + (fl & 1)));
            if (r == 0)
                r = buf_append(b, px->frames[i], fl);
            if (r == 0 && (fl & 1))
                r = buf_putc(b, 0);
        }
        return r ? r : put_header(b, TAG_SEQ_DELIM, VR_NONE, 0);
    }
    /* keep: native bytes (swapped from big endian) or the fragments */
    if (e->flags & DCM_E_ENCAPS) {
        r = put_header(b, e->tag, e->vr, DCM_UNDEFINED);
        for (uint32_t i = 0; i < e->n_frags && r == 0; i++) {
            r = put_header(b, TAG_ITEM, VR_NONE, e->frags[i].len);
            if (r == 0 && e->frags[i].len)
                r = frame_read_range(w->fd, w->l, e->frags[i].offset, e->frags[i].len, b);
        }
        return r ? r : put_header(b, TAG_SEQ_DELIM, VR_NONE, 0);
    }
    return -EINVAL;
}

static int write_ds(struct w *w, const struct dcm_ds *ds, unsigned depth);

static int write_elem(struct w *w, const struct dcm_elem *e, unsigned depth)
{
    struct buf *b = w->out;
    int r;
    if (TAG_ELEM(e->tag) == 0x0000 || TAG_GROUP(e->tag) == 0x0002)
        return 0; /* group lengths are not rewritten */
    if (depth == 0 && w->px && (e->tag == TAG_EXTENDED_OFFSET_TABLE ||
                                e->tag == TAG_EXTENDED_OFFSET_TABLE_LENGTHS) &&
        w->px->kind != PIX_KEEP)
        return 0; /* stale once the pixel data changes */
    if (depth == 0) {
        const char *ov = override_str(w->px, e->tag);
        if (ov)
            return put_string_elem(b, e->tag, e->vr, ov);
        if (w->px && e->tag == TAG(0x0028, 0x0006) && w->px->ov.planar >= 0) {
            uint8_t v[2] = {(uint8_t)w->px->ov.planar, 0};
            return put_value(b, e->tag, VR_US, v, 2);
        }
        if (w->px && e->tag == TAG(0x0028, 0x0101) && w->px->ov.bits_stored >= 0) {
            uint8_t v[2] = {(uint8_t)w->px->ov.bits_stored, 0};
            return put_value(b, e->tag, VR_US, v, 2);
        }
        if (w->px && e->tag == TAG(0x0028, 0x0102) && w->px->ov.high_bit >= 0) {
            uint8_t v[2] = {(uint8_t)w->px->ov.high_bit, 0};
            return put_value(b, e->tag, VR_US, v, 2);
        }
    }
    if (e->vr == VR_SQ) {
        r = put_header(b, e->tag, VR_SQ, DCM_UNDEFINED);
        for (uint32_t i = 0; i < e->n_items && r == 0; i++) {
            r = put_header(b, TAG_ITEM, VR_NONE, DCM_UNDEFINED);
            if (r == 0)
                r = write_ds(w, &e->items[i], depth + 1);
            if (r == 0)
                r = put_header(b, TAG_ITEM_DELIM, VR_NONE, 0);
        }
        return r ? r : put_header(b, TAG_SEQ_DELIM, VR_NONE, 0);
    }
    bool pixel = e->tag == TAG_PIXEL_DATA || e->tag == TAG_FLOAT_PIXEL_DATA ||
                 e->tag == TAG_DOUBLE_FLOAT_PIXEL_DATA;
    if (depth == 0 && pixel && (e->flags & DCM_E_ENCAPS || (w->px && w->px->kind != PIX_KEEP)))
        return write_pixels(w, e);
    if (e->flags & DCM_E_ENCAPS) {
        /* encapsulated data nested in a sequence (e.g. an icon): as stored */
        r = put_header(b, e->tag, e->vr, DCM_UNDEFINED);
        for (uint32_t i = 0; i < e->n_frags && r == 0; i++) {
            r = put_header(b, TAG_ITEM, VR_NONE, e->frags[i].len);
            if (r == 0 && e->frags[i].len)
                r = frame_read_range(w->fd, w->l, e->frags[i].offset, e->frags[i].len, b);
        }
        return r ? r : put_header(b, TAG_SEQ_DELIM, VR_NONE, 0);
    }
    if (e->flags & DCM_E_BULK) {
        /* read the value from the file, converted to little endian */
        buf_reset(&w->tmp);
        r = frame_read_range(w->fd, w->l, e->offset, e->len, &w->tmp);
        if (r < 0)
            return r;
        if (w->f->big_endian)
            swap_units((uint8_t *)w->tmp.data, w->tmp.len, vr_swap_unit(e->vr));
        return put_value(b, e->tag, e->vr, (const uint8_t *)w->tmp.data, w->tmp.len);
    }
    return put_value(b, e->tag, e->vr, e->value, e->value ? e->len : 0);
}

/* Attributes set by the overrides that the dataset lacks, written in tag
 * order among the others (LossyImageCompression and its ratio/method). */
static int put_missing(struct w *w, const struct dcm_ds *ds, uint32_t before, uint32_t *done)
{
    static const uint32_t tags[] = {TAG(0x0028, 0x2110), TAG(0x0028, 0x2112),
                                    TAG(0x0028, 0x2114)};
    static const uint16_t vrs[] = {VR_CS, VR_DS, VR_CS};
    int r = 0;
    for (size_t k = 0; k < YY_ARRAY_LEN(tags) && r == 0; k++) {
        if ((*done >> k) & 1 || tags[k] >= before)
            continue;
        const char *v = override_str(w->px, tags[k]);
        *done |= 1u << k;
        if (v && !dcm_find(ds, tags[k]))
            r = put_string_elem(w->out, tags[k], vrs[k], v);
    }
    return r;
}

static int write_ds(struct w *w, const struct dcm_ds *ds, unsigned depth)
{
    if (depth > DCM_MAX_DEPTH)
        return -E2BIG;
    int r = 0;
    uint32_t done = 0;
    for (uint32_t i = 0; i < ds->n && r == 0; i++) {
        if (depth == 0 && w->px)
            r = put_missing(w, ds, ds->elems[i].tag, &done);
        if (r == 0)
            r = write_elem(w, &ds->elems[i], depth);
    }
    if (r == 0 && depth == 0 && w->px)
        r = put_missing(w, ds, UINT32_MAX, &done);
    return r;
}

static int write_meta(struct w *w, const char *ts_uid)
{
    struct buf m;
    buf_init(&m, 1 << 20);
    const char *cls = dcm_str(w->f, &w->f->ds, TAG(0x0008, 0x0016));
    const char *sop = dcm_str(w->f, &w->f->ds, TAG(0x0008, 0x0018));
    if (!cls)
        cls = dcm_str(w->f, &w->f->meta, TAG_MEDIA_STORAGE_SOP_CLASS_UID);
    if (!sop)
        sop = dcm_str(w->f, &w->f->meta, TAG_MEDIA_STORAGE_SOP_INSTANCE_UID);
    static const uint8_t version[2] = {0, 1};
    int r = put_value(&m, TAG(0x0002, 0x0001), VR_OB, version, 2);
    r |= put_string_elem(&m, TAG(0x0002, 0x0002), VR_UI, cls ? cls : "");
    r |= put_string_elem(&m, TAG(0x0002, 0x0003), VR_UI, sop ? sop : "");
    r |= put_string_elem(&m, TAG(0x0002, 0x0010), VR_UI, ts_uid);
    r |= put_string_elem(&m, TAG(0x0002, 0x0012), VR_UI, YY_IMPLEMENTATION_CLASS_UID);
    r |= put_string_elem(&m, TAG(0x0002, 0x0013), VR_SH, YY_IMPLEMENTATION_VERSION);
    const char *src_ae = dcm_str(w->f, &w->f->meta, TAG_SOURCE_AE_TITLE);
    if (src_ae)
        r |= put_string_elem(&m, TAG_SOURCE_AE_TITLE, VR_AE, src_ae);
    if (r) {
        buf_release(&m);
        return -ENOMEM;
    }
    static const uint8_t zeros[128];
    r = buf_append(w->out, zeros, 128);
    r |= buf_append(w->out, "DICM", 4);
    uint8_t gl[4] = {(uint8_t)m.len, (uint8_t)(m.len >> 8), (uint8_t)(m.len >> 16),
                     (uint8_t)(m.len >> 24)};
    r |= put_value(w->out, TAG(0x0002, 0x0000), VR_UL, gl, 4);
    r |= buf_append(w->out, m.data, m.len);
    buf_release(&m);
    return r ? -ENOMEM : 0;
}

int dcm_write_part10(const struct dcm_file *f, int fd, const struct layout *l, const char *ts_uid,
                     const struct dcm_pixels *px, struct buf *out)
{
    struct w w = {f, fd, l, px, out, BUF_INIT};
    buf_init(&w.tmp, (size_t)2 << 30);
    int r = write_meta(&w, ts_uid);
    if (r == 0)
        r = write_ds(&w, &f->ds, 0);
    buf_release(&w.tmp);
    return r;
}
