/* layout.c - see layout.h. */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "dicom/json.h"
#include "dicom/layout.h"
#include "dicom/ts.h"
#include "dicom/vr.h"
#include "core/banned.h"

#define LAYOUT_MAGIC 0x4C590001u /* "YL" v1 */

static const char *str_or_empty(const struct dcm_file *f, uint32_t tag)
{
    const char *s = dcm_str(f, &f->ds, tag);
    return s ? s : "";
}

static uint32_t rd_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64le(const uint8_t *p)
{
    return (uint64_t)rd_u32le(p) | (uint64_t)rd_u32le(p + 4) << 32;
}

/* Index of the fragment whose item header starts at rel (relative to the
 * first fragment's item header), or -1. */
static long frag_at(const struct layout *l, uint64_t rel)
{
    uint64_t base = l->frags[0].offset - 8;
    uint32_t lo = 0, hi = l->n_frags;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t at = l->frags[mid].offset - 8 - base;
        if (at == rel)
            return mid;
        if (at < rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Frames from a list of starting offsets (relative to the first fragment). */
static bool frames_from_offsets(struct layout *l, const uint64_t *starts, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        long k = frag_at(l, starts[i]);
        if (k < 0)
            return false;
        l->frames[i].first_frag = (uint32_t)k;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t end = i + 1 < n ? l->frames[i + 1].first_frag : l->n_frags;
        if (end <= l->frames[i].first_frag)
            return false;
        l->frames[i].n_frags = end - l->frames[i].first_frag;
    }
    return true;
}

static bool looks_like_frame_start(const uint8_t *h, size_t n)
{
    if (n >= 2 && h[0] == 0xFF && (h[1] == 0xD8 || h[1] == 0x4F || h[1] == 0x0A))
        return true; /* JPEG / JPEG-LS SOI, J2K SOC, JPEG XL codestream */
    if (n >= 8 && h[0] == 0 && h[1] == 0 && h[2] == 0 && h[3] == 0x0C &&
        (memcmp(h + 4, "jP  ", 4) == 0 || memcmp(h + 4, "JXL ", 4) == 0))
        return true; /* JP2 / JPEG XL container */
    return false;
}

/* Reads want bytes at off of the file from memory or its fd. */
static bool read_at(const struct file_bytes *src, uint8_t *dst, size_t want, uint64_t off)
{
    if (src->mem) {
        if (off > src->len || want > src->len - off)
            return false;
        memcpy(dst, src->mem + off, want);
        return true;
    }
    return src->fd >= 0 && pread(src->fd, dst, want, (off_t)off) == (ssize_t)want;
}

static void locate_encaps_frames(const struct dcm_file *f, const struct file_bytes *src,
                                 const struct dcm_elem *px, struct layout *l, struct arena *a)
{
    uint32_t nf = l->n_frames;
    if (l->n_frags == 0 || nf == 0)
        return;
    l->frames = arena_zalloc(a, (size_t)nf * sizeof(*l->frames));
    if (!l->frames)
        return;
    if (nf == 1) {
        l->frames[0].first_frag = 0;
        l->frames[0].n_frags = l->n_frags;
        l->flags |= LAYOUT_FRAMES_OK;
        return;
    }
    uint64_t *starts = malloc((size_t)nf * sizeof(*starts));
    if (!starts)
        return;
    /* 1. Extended Offset Table (PS3.5 A.4, 7FE0,0001) */
    const struct dcm_elem *eot = dcm_find(&f->ds, TAG_EXTENDED_OFFSET_TABLE);
    if (eot && eot->value && eot->len >= (uint64_t)nf * 8) {
        for (uint32_t i = 0; i < nf; i++)
            starts[i] = rd_u64le(eot->value + (size_t)i * 8);
        if (frames_from_offsets(l, starts, nf))
            goto ok;
    }
    /* 2. Basic Offset Table */
    if (px->value && px->frags[0].len >= (uint64_t)nf * 4) {
        for (uint32_t i = 0; i < nf; i++)
            starts[i] = rd_u32le(px->value + (size_t)i * 4);
        if (frames_from_offsets(l, starts, nf))
            goto ok;
    }
    /* 3. one fragment per frame */
    if (l->n_frags == nf) {
        for (uint32_t i = 0; i < nf; i++) {
            l->frames[i].first_frag = i;
            l->frames[i].n_frags = 1;
        }
        goto ok;
    }
    /* 4. codestream markers at fragment starts */
    if (src && (src->mem || src->fd >= 0) && !f->deflated && l->n_frags > nf) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < l->n_frags; i++) {
            uint8_t h[8];
            size_t want = l->frags[i].len < 8 ? l->frags[i].len : 8;
            if (!read_at(src, h, want, l->frags[i].offset))
                goto fail;
            if (looks_like_frame_start(h, want)) {
                if (k == nf)
                    goto fail;
                l->frames[k].first_frag = i;
                k++;
            }
        }
        if (k != nf || l->frames[0].first_frag != 0)
            goto fail;
        for (uint32_t i = 0; i < nf; i++) {
            uint32_t end = i + 1 < nf ? l->frames[i + 1].first_frag : l->n_frags;
            l->frames[i].n_frags = end - l->frames[i].first_frag;
        }
        goto ok;
    }
fail:
    free(starts);
    return;
ok:
    l->flags |= LAYOUT_FRAMES_OK;
    free(starts);
}

int layout_from_file(const struct dcm_file *f, const struct file_bytes *src,
                     const struct json_bulk *bulk, size_t n_bulk, struct layout *l)
{
    struct arena *a = f->arena;
    memset(l, 0, sizeof(*l));
    l->ts_uid = f->ts_uid ? f->ts_uid : "";
    l->dataset_offset = f->dataset_offset;
    if (f->deflated)
        l->flags |= LAYOUT_DEFLATED;
    if (f->big_endian)
        l->flags |= LAYOUT_BIG;
    l->rows = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0010), 0);
    l->cols = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0011), 0);
    l->spp = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0002), 1);
    l->bits_alloc = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0100), 0);
    l->bits_stored = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0101), l->bits_alloc);
    l->high_bit = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0102),
                                     l->bits_stored ? l->bits_stored - 1 : 0);
    l->pixrep = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0103), 0);
    l->planar = (uint16_t)dcm_long(&f->ds, TAG(0x0028, 0x0006), 0);
    long nf = dcm_long(&f->ds, TAG(0x0028, 0x0008), 1);
    l->n_frames = nf > 0 && nf < (1L << 24) ? (uint32_t)nf : 1;
    l->photometric = str_or_empty(f, TAG(0x0028, 0x0004));

    const struct dcm_elem *px = dcm_find(&f->ds, TAG_PIXEL_DATA);
    if (!px)
        px = dcm_find(&f->ds, TAG_FLOAT_PIXEL_DATA);
    if (!px)
        px = dcm_find(&f->ds, TAG_DOUBLE_FLOAT_PIXEL_DATA);
    if (px) {
        l->flags |= LAYOUT_PIXELS;
        l->pixel_tag = px->tag;
        l->pixel_vr = px->vr;
        l->pixel_offset = px->offset;
        l->pixel_len = px->len;
        if (px->flags & DCM_E_ENCAPS) {
            l->flags |= LAYOUT_ENCAPS;
            l->n_frags = px->n_frags - 1;
            l->frags = px->frags + 1;
            locate_encaps_frames(f, src, px, l, a);
        } else {
            uint64_t fb = layout_native_frame_bytes(l);
            if (fb && (l->bits_alloc == 1
                           ? ((uint64_t)l->rows * l->cols * l->spp * l->n_frames + 7) / 8
                           : fb * l->n_frames) <= px->len)
                l->flags |= LAYOUT_FRAMES_OK;
        }
    }
    if (n_bulk) {
        l->bulk = arena_alloc(a, n_bulk * sizeof(*l->bulk));
        if (!l->bulk)
            return -ENOMEM;
        for (size_t i = 0; i < n_bulk; i++) {
            struct layout_bulk *b = &l->bulk[i];
            b->path = arena_strdup(a, bulk[i].path);
            if (!b->path)
                return -ENOMEM;
            b->tag = bulk[i].tag;
            b->vr = bulk[i].vr;
            b->flags = bulk[i].flags & DCM_E_ENCAPS;
            b->offset = bulk[i].offset;
            b->len = bulk[i].len;
        }
        l->n_bulk = (uint32_t)n_bulk;
    }
    return 0;
}

uint64_t layout_native_frame_bytes(const struct layout *l)
{
    if (!l->rows || !l->cols || !l->spp || !l->bits_alloc)
        return 0;
    uint64_t px = (uint64_t)l->rows * l->cols * l->spp;
    /* uncompressed YBR_FULL_422 / YBR_PARTIAL_422 (PS3.3 C.7.6.3.1.2): two
     * luminance samples share one Cb and one Cr, so two samples per pixel */
    if (!(l->flags & LAYOUT_ENCAPS) && l->spp == 3 && l->photometric &&
        (!strcmp(l->photometric, "YBR_FULL_422") || !strcmp(l->photometric, "YBR_PARTIAL_422")))
        px = (uint64_t)l->rows * l->cols * 2;
    if (l->bits_alloc == 1)
        return (px + 7) / 8;
    if (l->bits_alloc % 8)
        return 0;
    return px * (l->bits_alloc / 8);
}

const struct layout_bulk *layout_find_bulk(const struct layout *l, const char *path)
{
    for (uint32_t i = 0; i < l->n_bulk; i++)
        if (strcmp(l->bulk[i].path, path) == 0)
            return &l->bulk[i];
    return NULL;
}

/* ---- encoding: little-endian fields, strings as u16 length + bytes ---- */

static int put_u16(struct buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return buf_append(b, x, 2);
}

static int put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_append(b, x, 4);
}

static int put_u64(struct buf *b, uint64_t v)
{
    int r = put_u32(b, (uint32_t)v);
    return r ? r : put_u32(b, (uint32_t)(v >> 32));
}

static int put_str(struct buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0xFFFF)
        return -E2BIG;
    int r = put_u16(b, (uint16_t)n);
    return r ? r : buf_append(b, s ? s : "", n);
}

int layout_encode(const struct layout *l, struct buf *b)
{
    int r = 0;
    r |= put_u32(b, LAYOUT_MAGIC);
    r |= put_u32(b, l->flags);
    r |= put_str(b, l->ts_uid);
    r |= put_u64(b, l->dataset_offset);
    r |= put_u32(b, l->pixel_tag);
    r |= put_u16(b, l->pixel_vr);
    r |= put_u64(b, l->pixel_offset);
    r |= put_u64(b, l->pixel_len);
    const uint16_t px[8] = {l->rows,        l->cols,     l->spp,    l->bits_alloc,
                            l->bits_stored, l->high_bit, l->pixrep, l->planar};
    for (int i = 0; i < 8; i++)
        r |= put_u16(b, px[i]);
    r |= put_u32(b, l->n_frames);
    r |= put_str(b, l->photometric);
    r |= put_u32(b, l->n_frags);
    for (uint32_t i = 0; i < l->n_frags; i++) {
        r |= put_u64(b, l->frags[i].offset);
        r |= put_u32(b, l->frags[i].len);
    }
    bool frames = (l->flags & LAYOUT_ENCAPS) && (l->flags & LAYOUT_FRAMES_OK);
    r |= put_u32(b, frames ? l->n_frames : 0);
    if (frames) {
        for (uint32_t i = 0; i < l->n_frames; i++) {
            r |= put_u32(b, l->frames[i].first_frag);
            r |= put_u32(b, l->frames[i].n_frags);
        }
    }
    r |= put_u32(b, l->n_bulk);
    for (uint32_t i = 0; i < l->n_bulk; i++) {
        r |= put_str(b, l->bulk[i].path);
        r |= put_u32(b, l->bulk[i].tag);
        r |= put_u16(b, l->bulk[i].vr);
        r |= put_u16(b, l->bulk[i].flags);
        r |= put_u64(b, l->bulk[i].offset);
        r |= put_u64(b, l->bulk[i].len);
    }
    return r ? -ENOMEM : 0;
}

struct rd {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint16_t get_u16(struct rd *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t get_u32(struct rd *r)
{
    const uint8_t *p = take(r, 4);
    return p ? rd_u32le(p) : 0;
}

static uint64_t get_u64(struct rd *r)
{
    const uint8_t *p = take(r, 8);
    return p ? rd_u64le(p) : 0;
}

static const char *get_str(struct rd *r, struct arena *a)
{
    uint16_t n = get_u16(r);
    const uint8_t *p = take(r, n);
    if (!p)
        return NULL;
    char *s = arena_strndup(a, (const char *)p, n);
    if (!s)
        r->bad = true;
    return s;
}

int layout_decode(const void *blob, size_t len, struct arena *a, struct layout *l)
{
    struct rd r = {blob, len, false};
    memset(l, 0, sizeof(*l));
    if (get_u32(&r) != LAYOUT_MAGIC)
        return -EBADMSG;
    l->flags = get_u32(&r);
    l->ts_uid = get_str(&r, a);
    l->dataset_offset = get_u64(&r);
    l->pixel_tag = get_u32(&r);
    l->pixel_vr = get_u16(&r);
    l->pixel_offset = get_u64(&r);
    l->pixel_len = get_u64(&r);
    l->rows = get_u16(&r);
    l->cols = get_u16(&r);
    l->spp = get_u16(&r);
    l->bits_alloc = get_u16(&r);
    l->bits_stored = get_u16(&r);
    l->high_bit = get_u16(&r);
    l->pixrep = get_u16(&r);
    l->planar = get_u16(&r);
    l->n_frames = get_u32(&r);
    l->photometric = get_str(&r, a);
    l->n_frags = get_u32(&r);
    if (r.bad || l->n_frags > r.left / 12)
        return -EBADMSG;
    if (l->n_frags) {
        l->frags = arena_alloc(a, (size_t)l->n_frags * sizeof(*l->frags));
        if (!l->frags)
            return -ENOMEM;
        for (uint32_t i = 0; i < l->n_frags; i++) {
            l->frags[i].offset = get_u64(&r);
            l->frags[i].len = get_u32(&r);
        }
    }
    uint32_t nfr = get_u32(&r);
    if (r.bad || nfr > r.left / 8 || (nfr && nfr != l->n_frames))
        return -EBADMSG;
    if (nfr) {
        l->frames = arena_alloc(a, (size_t)nfr * sizeof(*l->frames));
        if (!l->frames)
            return -ENOMEM;
        for (uint32_t i = 0; i < nfr; i++) {
            l->frames[i].first_frag = get_u32(&r);
            l->frames[i].n_frags = get_u32(&r);
            if (l->frames[i].first_frag > l->n_frags ||
                l->frames[i].n_frags > l->n_frags - l->frames[i].first_frag)
                return -EBADMSG;
        }
    }
    l->n_bulk = get_u32(&r);
    if (r.bad || l->n_bulk > r.left / 26)
        return -EBADMSG;
    if (l->n_bulk) {
        l->bulk = arena_alloc(a, (size_t)l->n_bulk * sizeof(*l->bulk));
        if (!l->bulk)
            return -ENOMEM;
        for (uint32_t i = 0; i < l->n_bulk; i++) {
            l->bulk[i].path = get_str(&r, a);
            l->bulk[i].tag = get_u32(&r);
            l->bulk[i].vr = get_u16(&r);
            l->bulk[i].flags = get_u16(&r);
            l->bulk[i].offset = get_u64(&r);
            l->bulk[i].len = get_u64(&r);
        }
    }
    if (r.bad || !l->ts_uid || !l->photometric)
        return -EBADMSG;
    return 0;
}
