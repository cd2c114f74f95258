/* render.c - see render.h. */
#include "core/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/vr.h"
#include "render/render.h"
#include "core/banned.h"

#define MAX_OUT_PIXELS ((uint64_t)8192 * 8192)

static void lut_release(struct lut *l)
{
    free(l->data);
    memset(l, 0, sizeof(*l));
}

void render_info_release(struct render_info *ri)
{
    lut_release(&ri->modality_lut);
    lut_release(&ri->voi_lut);
    for (int i = 0; i < 3; i++)
        lut_release(&ri->palette[i]);
}

void image8_release(struct image8 *im)
{
    free(im->px);
    im->px = NULL;
}

/* ---- reading the dataset ---- */

static uint16_t u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Numeric values of a DS element (backslash separated), up to max. */
static unsigned ds_values(const struct dcm_ds *ds, uint32_t tag, double *out, unsigned max)
{
    const struct dcm_elem *e = dcm_find(ds, tag);
    if (!e || !e->value || (e->flags & DCM_E_BULK))
        return 0;
    unsigned n = 0;
    const char *p = (const char *)e->value, *end = p + e->len;
    while (p < end && n < max) {
        char *q;
        double d = strtod(p, &q);
        if (q == p)
            break;
        if (isfinite(d))
            out[n++] = d;
        p = q;
        while (p < end && (*p == ' ' || *p == '\\'))
            p++;
    }
    return n;
}

static const char *cs_value(const struct dcm_file *f, const struct dcm_ds *ds, uint32_t tag)
{
    return dcm_str(f, ds, tag);
}

/* The bytes of an element, loaded or bulk (read from the file). */
static int elem_bytes(const struct dcm_elem *e, int fd, const struct layout *l, bool big,
                      struct buf *out)
{
    if (!(e->flags & DCM_E_BULK))
        return buf_append(out, e->value ? e->value : (const uint8_t *)"", e->value ? e->len : 0);
    if (fd < 0 || e->len > ((uint32_t)16 << 20))
        return -EBADMSG;
    int r = frame_read_range(fd, l, e->offset, e->len, out);
    if (r == 0 && big) {
        uint8_t *v = (uint8_t *)out->data;
        for (size_t i = 0; i + 1 < out->len; i += 2) {
            uint8_t t = v[i];
            v[i] = v[i + 1];
            v[i + 1] = t;
        }
    }
    return r;
}

/* A LUT from its descriptor (3 x US/SS) and data (OW/US). */
static int read_lut(const struct dcm_file *f, const struct dcm_ds *ds, uint32_t desc_tag,
                    uint32_t data_tag, int fd, const struct layout *l, struct lut *out)
{
    const struct dcm_elem *d = dcm_find(ds, desc_tag);
    const struct dcm_elem *v = dcm_find(ds, data_tag);
    if (!d || !v || !d->value || d->len < 6)
        return 0;
    uint32_t n = u16(d->value);
    if (n == 0)
        n = 65536;
    int32_t first = d->vr == VR_SS ? (int16_t)u16(d->value + 2) : (int32_t)u16(d->value + 2);
    uint16_t bits = u16(d->value + 4);
    struct buf b;
    buf_init(&b, (size_t)1 << 20);
    int r = elem_bytes(v, fd, l, f->big_endian, &b);
    if (r < 0) {
        buf_release(&b);
        return r;
    }
    out->data = calloc(n, sizeof(uint16_t));
    if (!out->data) {
        buf_release(&b);
        return -ENOMEM;
    }
    out->n = n;
    out->first = first;
    out->bits = bits ? bits : 16;
    if (b.len >= (size_t)n * 2) {
        for (uint32_t i = 0; i < n; i++)
            out->data[i] = u16((const uint8_t *)b.data + 2 * i);
    } else if (b.len >= n) {
        /* 8-bit entries packed in OW (seen in the wild) */
        for (uint32_t i = 0; i < n; i++)
            out->data[i] = ((const uint8_t *)b.data)[i];
        out->bits = 8;
    } else {
        lut_release(out);
        r = -EBADMSG;
    }
    buf_release(&b);
    return r;
}

/* Segmented palette LUT (PS3.3 C.7.9.2): discrete, linear and indirect
 * segments expanded into n entries. */
static int read_segmented(const struct dcm_file *f, const struct dcm_ds *ds, uint32_t desc_tag,
                          uint32_t data_tag, int fd, const struct layout *l, struct lut *out)
{
    const struct dcm_elem *d = dcm_find(ds, desc_tag);
    const struct dcm_elem *v = dcm_find(ds, data_tag);
    if (!d || !v || !d->value || d->len < 6)
        return 0;
    uint32_t n = u16(d->value);
    if (n == 0)
        n = 65536;
    struct buf b;
    buf_init(&b, (size_t)1 << 20);
    int r = elem_bytes(v, fd, l, f->big_endian, &b);
    if (r < 0) {
        buf_release(&b);
        return r;
    }
    size_t nw = b.len / 2;
    const uint8_t *w = (const uint8_t *)b.data;
    out->data = calloc(n, sizeof(uint16_t));
    if (!out->data) {
        buf_release(&b);
        return -ENOMEM;
    }
    out->n = n;
    out->first = (int32_t)u16(d->value + 2);
    out->bits = u16(d->value + 4) ? u16(d->value + 4) : 16;
    uint32_t pos = 0;
    size_t i = 0;
    unsigned guard = 0;
    while (i + 1 < nw && pos < n && guard++ < 100000) {
        uint16_t op = u16(w + 2 * i), len = u16(w + 2 * (i + 1));
        i += 2;
        if (op == 0) { /* discrete */
            for (uint16_t k = 0; k < len && i < nw && pos < n; k++, i++)
                out->data[pos++] = u16(w + 2 * i);
        } else if (op == 1) { /* linear to the next value */
            if (i >= nw || pos == 0)
                break;
            double y0 = out->data[pos - 1], y1 = u16(w + 2 * i);
            i++;
            for (uint16_t k = 1; k <= len && pos < n; k++)
                out->data[pos++] = (uint16_t)lround(y0 + (y1 - y0) * k / len);
        } else if (op == 2) { /* indirect: not used by any writer we know */
            break;
        } else {
            break;
        }
    }
    while (pos < n && pos > 0) {
        out->data[pos] = out->data[pos - 1];
        pos++;
    }
    buf_release(&b);
    return 0;
}

int render_info_from_file(const struct dcm_file *f, int fd, const struct layout *l,
                          struct render_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    const struct dcm_ds *ds = &f->ds;
    ri->rows = l->rows;
    ri->cols = l->cols;
    ri->spp = l->spp;
    ri->bits_alloc = l->bits_alloc;
    ri->bits_stored = l->bits_stored ? l->bits_stored : l->bits_alloc;
    ri->high_bit = l->high_bit;
    ri->pixrep = l->pixrep;
    ri->n_frames = l->n_frames;
    snprintf(ri->photometric, sizeof(ri->photometric), "%s", l->photometric);
    ri->float_data = l->pixel_tag == TAG_FLOAT_PIXEL_DATA || l->pixel_tag == TAG_DOUBLE_FLOAT_PIXEL_DATA;
    ri->is_image = (l->flags & LAYOUT_PIXELS) && l->rows && l->cols && l->bits_alloc;
    double v[4];
    ri->slope = ds_values(ds, TAG(0x0028, 0x1053), v, 1) ? v[0] : 1.0;
    ri->intercept = ds_values(ds, TAG(0x0028, 0x1052), v, 1) ? v[0] : 0.0;
    if (ri->slope == 0)
        ri->slope = 1.0;
    /* Enhanced objects keep them in the shared functional groups */
    const struct dcm_elem *sfg = dcm_find(ds, TAG(0x5200, 0x9229));
    if (sfg && sfg->n_items) {
        const struct dcm_elem *pvt = dcm_find(&sfg->items[0], TAG(0x0028, 0x9145));
        if (pvt && pvt->n_items) {
            if (ds_values(&pvt->items[0], TAG(0x0028, 0x1053), v, 1))
                ri->slope = v[0] ? v[0] : 1.0;
            if (ds_values(&pvt->items[0], TAG(0x0028, 0x1052), v, 1))
                ri->intercept = v[0];
        }
        const struct dcm_elem *fvoi = dcm_find(&sfg->items[0], TAG(0x0028, 0x9132));
        if (fvoi && fvoi->n_items) {
            double c[4], w[4];
            unsigned nc = ds_values(&fvoi->items[0], TAG(0x0028, 0x1050), c, 4);
            unsigned nw = ds_values(&fvoi->items[0], TAG(0x0028, 0x1051), w, 4);
            for (unsigned i = 0; i < nc && i < nw; i++) {
                ri->center[i] = c[i];
                ri->width[i] = w[i];
                ri->n_windows = i + 1;
            }
        }
    }
    double c[4], w[4];
    unsigned nc = ds_values(ds, TAG(0x0028, 0x1050), c, 4);
    unsigned nw = ds_values(ds, TAG(0x0028, 0x1051), w, 4);
    if (nc && nw) {
        ri->n_windows = 0;
        for (unsigned i = 0; i < nc && i < nw; i++) {
            if (w[i] <= 0)
                continue;
            ri->center[ri->n_windows] = c[i];
            ri->width[ri->n_windows] = w[i];
            ri->n_windows++;
        }
    }
    const char *fn = cs_value(f, ds, TAG(0x0028, 0x1056));
    ri->voi_fn = !fn ? VOI_LINEAR
                 : !strcmp(fn, "SIGMOID") ? VOI_SIGMOID
                 : !strcmp(fn, "LINEAR_EXACT") ? VOI_LINEAR_EXACT
                                               : VOI_LINEAR;
    const char *pls = cs_value(f, ds, TAG(0x2050, 0x0020));
    ri->inverse = pls && !strcmp(pls, "INVERSE");
    int r = 0;
    const struct dcm_elem *mls = dcm_find(ds, TAG(0x0028, 0x3000));
    if (mls && mls->n_items)
        r = read_lut(f, &mls->items[0], TAG(0x0028, 0x3002), TAG(0x0028, 0x3006), fd, l,
                     &ri->modality_lut);
    const struct dcm_elem *vls = dcm_find(ds, TAG(0x0028, 0x3010));
    if (r == 0 && vls && vls->n_items)
        r = read_lut(f, &vls->items[0], TAG(0x0028, 0x3002), TAG(0x0028, 0x3006), fd, l,
                     &ri->voi_lut);
    if (r == 0 && !strcmp(ri->photometric, "PALETTE COLOR")) {
        for (int k = 0; k < 3 && r == 0; k++) {
            uint32_t desc = TAG(0x0028, 0x1101 + k);
            if (dcm_find(ds, TAG(0x0028, 0x1221 + k)))
                r = read_segmented(f, ds, desc, TAG(0x0028, 0x1221 + k), fd, l, &ri->palette[k]);
            else
                r = read_lut(f, ds, desc, TAG(0x0028, 0x1201 + k), fd, l, &ri->palette[k]);
        }
    }
    if (r < 0)
        render_info_release(ri);
    return r;
}

/* ---- parameters ---- */

static int parse_doubles(const char *s, double *out, unsigned max, unsigned *n, char **rest)
{
    *n = 0;
    const char *p = s;
    while (*p && *n < max) {
        char *q;
        double d = strtod(p, &q);
        if (q == p || !isfinite(d))
            break;
        out[(*n)++] = d;
        p = q;
        if (*p != ',')
            break;
        p++;
    }
    *rest = (char *)p;
    return 0;
}

int render_params_parse(const char *window, const char *viewport, const char *quality,
                        struct render_params *p, char *err, size_t err_cap)
{
    memset(p, 0, sizeof(*p));
    if (window) {
        /* center,width[,function] */
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", window);
        char *parts[4] = {NULL};
        unsigned n = 0;
        char *save = buf;
        for (char *c = buf; n < 4; c++) {
            if (*c == ',' || *c == 0) {
                bool end = *c == 0;
                *c = 0;
                parts[n++] = save;
                save = c + 1;
                if (end)
                    break;
            }
        }
        char *e1 = NULL, *e2 = NULL;
        double cv = n >= 2 ? strtod(parts[0], &e1) : 0, wv = n >= 2 ? strtod(parts[1], &e2) : 0;
        if (n < 2 || n > 3 || strlen(window) >= sizeof(buf) || e1 == parts[0] || *e1 ||
            e2 == parts[1] || *e2 || !isfinite(cv) || !isfinite(wv) || wv <= 0) {
            snprintf(err, err_cap, "window must be center,width[,linear|linear-exact|sigmoid] "
                                   "with a positive width");
            return -EINVAL;
        }
        p->has_window = true;
        p->center = cv;
        p->width = wv;
        if (n == 3) {
            /* PS3.18 spells them "linear", "linear-exact", "sigmoid";
             * the PS3.3 defined terms are accepted too */
            const char *f = parts[2];
            if (!strcasecmp(f, "linear"))
                p->fn = VOI_LINEAR;
            else if (!strcasecmp(f, "linear-exact") || !strcasecmp(f, "linear_exact"))
                p->fn = VOI_LINEAR_EXACT;
            else if (!strcasecmp(f, "sigmoid"))
                p->fn = VOI_SIGMOID;
            else {
                snprintf(err, err_cap, "unknown VOI LUT function \"%.20s\"", f);
                return -EINVAL;
            }
            p->fn_given = true;
        }
    }
    if (viewport) {
        double v[6];
        unsigned n;
        char *rest;
        parse_doubles(viewport, v, 6, &n, &rest);
        if ((n != 2 && n != 6) || *rest || v[0] < 1 || v[1] < 1 || v[0] > 8192 || v[1] > 8192 ||
            v[0] != floor(v[0]) || v[1] != floor(v[1])) {
            snprintf(err, err_cap, "viewport must be vw,vh[,sx,sy,sw,sh] with 1 <= vw,vh <= 8192");
            return -EINVAL;
        }
        p->vw = (unsigned)v[0];
        p->vh = (unsigned)v[1];
        if (n == 6) {
            if (v[4] == 0 || v[5] == 0) {
                snprintf(err, err_cap, "viewport: sw and sh must not be 0");
                return -EINVAL;
            }
            p->has_region = true;
            p->sx = v[2];
            p->sy = v[3];
            p->sw = v[4];
            p->sh = v[5];
        }
    }
    if (quality) {
        char *end;
        long q = strtol(quality, &end, 10);
        if (end == quality || *end || q < 1 || q > 100) {
            snprintf(err, err_cap, "quality must be an integer from 1 to 100");
            return -EINVAL;
        }
        p->quality = (unsigned)q;
    }
    return 0;
}

/* ---- pipeline ---- */

/* Stored value i of the frame as an integer (masked, sign-extended). */
static inline int64_t sample(const struct render_info *ri, const uint8_t *px, size_t i)
{
    if (ri->bits_alloc == 16 && ri->high_bit + 1 == ri->bits_stored) {
        /* the common case: 16-bit container, stored bits at the bottom */
        uint16_t raw = (uint16_t)(px[2 * i] | px[2 * i + 1] << 8);
        unsigned bs = ri->bits_stored;
        if (bs == 16)
            return ri->pixrep ? (int16_t)raw : raw;
        uint16_t v = raw & (uint16_t)((1u << bs) - 1);
        if (ri->pixrep && (v >> (bs - 1)) & 1)
            return (int64_t)v - (1LL << bs);
        return v;
    }
    uint64_t raw;
    switch (ri->bits_alloc) {
    case 8:
        raw = px[i];
        break;
    case 16:
        raw = (uint64_t)px[2 * i] | (uint64_t)px[2 * i + 1] << 8;
        break;
    case 32:
        raw = (uint64_t)px[4 * i] | (uint64_t)px[4 * i + 1] << 8 | (uint64_t)px[4 * i + 2] << 16 |
              (uint64_t)px[4 * i + 3] << 24;
        break;
    default:
        raw = px[i];
        break;
    }
    unsigned bs = ri->bits_stored ? ri->bits_stored : ri->bits_alloc;
    if (bs > 32 || ri->bits_alloc == 1)
        return (int64_t)raw;
    unsigned hb1 = (unsigned)ri->high_bit + 1;
    unsigned shift = hb1 >= bs ? hb1 - bs : 0;
    uint64_t v = (raw >> shift) & ((bs >= 64) ? ~0ull : ((1ull << bs) - 1));
    if (ri->pixrep && bs < 64 && (v >> (bs - 1)) & 1)
        return (int64_t)(v | ~((1ull << bs) - 1));
    return (int64_t)v;
}

static double float_sample(const struct render_info *ri, const uint8_t *px, size_t i)
{
    if (ri->bits_alloc == 64) {
        double d;
        memcpy(&d, px + 8 * i, 8);
        return d;
    }
    float f;
    memcpy(&f, px + 4 * i, 4);
    return f;
}

static double modality(const struct render_info *ri, double v)
{
    if (ri->modality_lut.n) {
        int64_t k = (int64_t)v - ri->modality_lut.first;
        if (k < 0)
            k = 0;
        if (k >= (int64_t)ri->modality_lut.n)
            k = ri->modality_lut.n - 1;
        return ri->modality_lut.data[k];
    }
    return v * ri->slope + ri->intercept;
}

/* PS3.3 C.11.2.1.2: window functions to 0..1. */
static double voi(enum voi_fn fn, double c, double w, double x)
{
    switch (fn) {
    case VOI_LINEAR_EXACT:
        if (x <= c - w / 2)
            return 0;
        if (x > c + w / 2)
            return 1;
        return (x - (c - w / 2)) / w;
    case VOI_SIGMOID:
        return 1.0 / (1.0 + exp(-4.0 * (x - c) / w));
    case VOI_LINEAR:
    default:
        if (w < 1)
            w = 1;
        if (x <= c - 0.5 - (w - 1) / 2)
            return 0;
        if (x > c - 0.5 + (w - 1) / 2)
            return 1;
        return ((x - (c - 0.5)) / (w - 1) + 0.5);
    }
}

static bool is_ybr(const char *pi)
{
    return !strncmp(pi, "YBR_FULL", 8) || !strncmp(pi, "YBR_PARTIAL", 11) ||
           !strcmp(pi, "YBR_ICT") || !strcmp(pi, "YBR_RCT");
}

static uint8_t clamp8(double v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lround(v);
}

/* Colour frame to RGB8 (full size). */
static int colour_to_rgb(const struct render_info *ri, const uint8_t *px, size_t len,
                         const char *pi, uint8_t *rgb)
{
    size_t n = (size_t)ri->rows * ri->cols;
    unsigned bpsamp = ri->bits_alloc / 8;
    if (!bpsamp)
        return -ENOTSUP;
    bool ybr = is_ybr(pi);
    bool s422 = !strcmp(pi, "YBR_FULL_422") || !strcmp(pi, "YBR_PARTIAL_422");
    if (s422 && len >= n * 2 * bpsamp) {
        /* stored (not decoded) 4:2:2: Y0 Y1 Cb Cr per pixel pair */
        for (size_t i = 0; i + 1 < n + 1 && i < n; i += 2) {
            const uint8_t *q = px + (i / 2) * 4 * bpsamp;
            double y0 = q[0], y1 = q[bpsamp], cb = q[2 * bpsamp], cr = q[3 * bpsamp];
            for (int k = 0; k < 2 && i + (size_t)k < n; k++) {
                double y = k ? y1 : y0;
                uint8_t *o = rgb + 3 * (i + (size_t)k);
                o[0] = clamp8(y + 1.402 * (cr - 128));
                o[1] = clamp8(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
                o[2] = clamp8(y + 1.772 * (cb - 128));
            }
        }
        return 0;
    }
    if (len < n * 3 * bpsamp)
        return -EBADMSG;
    double maxv = (double)((1u << (ri->bits_stored ? ri->bits_stored : 8)) - 1);
    for (size_t i = 0; i < n; i++) {
        double c[3];
        for (int k = 0; k < 3; k++) {
            size_t at = (3 * i + (size_t)k) * bpsamp;
            c[k] = bpsamp == 1 ? px[at] : (double)(px[at] | px[at + 1] << 8);
            if (bpsamp > 1)
                c[k] = c[k] * 255.0 / maxv;
        }
        uint8_t *o = rgb + 3 * i;
        if (ybr) {
            o[0] = clamp8(c[0] + 1.402 * (c[2] - 128));
            o[1] = clamp8(c[0] - 0.344136 * (c[1] - 128) - 0.714136 * (c[2] - 128));
            o[2] = clamp8(c[0] + 1.772 * (c[1] - 128));
        } else {
            o[0] = clamp8(c[0]);
            o[1] = clamp8(c[1]);
            o[2] = clamp8(c[2]);
        }
    }
    return 0;
}

static int palette_to_rgb(const struct render_info *ri, const uint8_t *px, size_t len,
                          uint8_t *rgb)
{
    size_t n = (size_t)ri->rows * ri->cols;
    if (len < n * (ri->bits_alloc / 8))
        return -EBADMSG;
    for (int k = 0; k < 3; k++)
        if (!ri->palette[k].n)
            return -ENOTSUP;
    for (size_t i = 0; i < n; i++) {
        int64_t v = sample(ri, px, i);
        for (int k = 0; k < 3; k++) {
            const struct lut *l = &ri->palette[k];
            int64_t x = v - l->first;
            if (x < 0)
                x = 0;
            if (x >= (int64_t)l->n)
                x = l->n - 1;
            unsigned e = l->data[x];
            rgb[3 * i + (size_t)k] = l->bits > 8 ? (uint8_t)(e >> 8) : (uint8_t)e;
        }
    }
    return 0;
}

/* Little-endian 16-bit sample i, masked, XOR flip (signed values in offset
 * binary keep their order). */
static inline uint16_t u16_at(const uint8_t *px, size_t i, uint16_t mask, uint16_t flip)
{
    uint16_t x;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&x, px + 2 * i, 2);
#else
    x = (uint16_t)(px[2 * i] | px[2 * i + 1] << 8);
#endif
    return (uint16_t)((x & mask) ^ flip);
}

/* The two hot loops of rendering 16-bit images, vectorised (-O2 does not
 * vectorise reductions): min and max of the samples, then the LUT. */
#if defined(__GNUC__) && !defined(__clang__)
#define YY_VECTORISE __attribute__((optimize("O3")))
#else
#define YY_VECTORISE
#endif

YY_VECTORISE static void minmax16(const uint8_t *px, size_t n, uint16_t mask, uint16_t flip,
                                  uint16_t *lo, uint16_t *hi)
{
    uint16_t a = 0xFFFF, b = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t x = u16_at(px, i, mask, flip);
        a = x < a ? x : a;
        b = x > b ? x : b;
    }
    *lo = a;
    *hi = b;
}

YY_VECTORISE static void lut16(const uint8_t *px, size_t n, uint16_t mask, uint16_t flip,
                               uint16_t base, const uint8_t *lut, uint8_t *g)
{
    for (size_t i = 0; i < n; i++)
        g[i] = lut[(uint16_t)(u16_at(px, i, mask, flip) - base)];
}

/* Grayscale frame to 8 bits through modality, VOI and presentation. */
static int gray_to_8(const struct render_info *ri, const uint8_t *px, size_t len,
                     const char *pi, const struct render_params *p, uint8_t *g)
{
    size_t n = (size_t)ri->rows * ri->cols;
    unsigned ba = ri->bits_alloc;
    if (ba == 1) {
        if (len < n)
            return -EBADMSG;
        for (size_t i = 0; i < n; i++)
            g[i] = px[i] ? 255 : 0;
        if ((!strcmp(pi, "MONOCHROME1")) ^ ri->inverse)
            for (size_t i = 0; i < n; i++)
                g[i] = (uint8_t)(255 - g[i]);
        return 0;
    }
    if (len < n * (ba / 8))
        return -EBADMSG;
    /* the window */
    double c, w;
    enum voi_fn fn = p->fn_given ? p->fn : ri->voi_fn;
    /* LINEAR (PS3.3 C.11.2.1.2.1) is defined for integer values; on real
     * (float) data its -0.5 / w-1 terms would turn a window of width 1 into
     * a threshold, so float data use the exact form */
    if (ri->float_data && fn == VOI_LINEAR)
        fn = VOI_LINEAR_EXACT;
    bool use_voi_lut = false;
    if (p->has_window) {
        c = p->center;
        w = p->width;
    } else if (ri->n_windows) {
        c = ri->center[0];
        w = ri->width[0];
    } else if (ri->voi_lut.n) {
        use_voi_lut = true;
        c = w = 0;
    } else {
        /* the range of this frame's modality values */
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            double v = ri->float_data ? float_sample(ri, px, i) : modality(ri, (double)sample(ri, px, i));
            if (!isfinite(v))
                continue;
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
        }
        if (!(hi >= lo)) {
            lo = 0;
            hi = 1;
        }
        fn = VOI_LINEAR_EXACT;
        c = (lo + hi) / 2;
        w = hi - lo > 0 ? hi - lo : 1;
    }
    bool invert = (!strcmp(pi, "MONOCHROME1")) ^ ri->inverse;
    /* integer data: a lookup table over the stored range when it is small */
    unsigned bs = ri->bits_stored ? ri->bits_stored : ba;
    if (!ri->float_data && bs <= 16) {
        /* a LUT spanning only the stored values present; 16-bit samples
         * whose high bit is the top stored bit (nearly every CT and MR) are
         * read twice in place, others go once into int32 first */
        unsigned hb1 = (unsigned)ri->high_bit + 1;
        bool in_place = ba == 16 && hb1 == bs;
        const uint16_t mask = (uint16_t)(bs == 16 ? 0xFFFF : (1u << bs) - 1);
        const int32_t sign = bs == 16 ? 0x8000 : (int32_t)(1u << (bs - 1));
        int32_t *v = NULL;
        int32_t lo = INT32_MAX, hi = INT32_MIN;
        /* in place, LUT index = (x ^ flip) - base, x the masked raw value:
         * signed values in offset binary keep their order */
        const uint16_t flip = ri->pixrep ? (uint16_t)sign : 0;
        uint16_t base = 0;
        if (in_place) {
            uint16_t a, b;
            minmax16(px, n, mask, flip, &a, &b);
            if (n) {
                lo = (int32_t)a - (ri->pixrep ? sign : 0);
                hi = (int32_t)b - (ri->pixrep ? sign : 0);
                base = a;
            }
        } else {
            v = malloc(n * sizeof(*v));
            if (!v)
                return -ENOMEM;
            if (ba == 8 && bs == 8) {
                for (size_t i = 0; i < n; i++)
                    v[i] = ri->pixrep ? (int8_t)px[i] : px[i];
            } else {
                for (size_t i = 0; i < n; i++)
                    v[i] = (int32_t)sample(ri, px, i);
            }
            for (size_t i = 0; i < n; i++) {
                lo = v[i] < lo ? v[i] : lo;
                hi = v[i] > hi ? v[i] : hi;
            }
        }
        if (hi < lo) /* no pixels */
            lo = hi = 0;
        /* stored values are at most 16 bits wide: the span is <= 65536 */
        size_t span = (size_t)((int64_t)hi - lo + 1);
        if (span > (1u << 17))
            span = 1u << 17;
        uint8_t *lut = malloc(span);
        if (!lut) {
            free(v);
            return -ENOMEM;
        }
        for (size_t k = 0; k < span; k++) {
            double m = modality(ri, (double)(lo + (int64_t)k));
            double y;
            if (use_voi_lut) {
                int64_t x = (int64_t)m - ri->voi_lut.first;
                if (x < 0)
                    x = 0;
                if (x >= (int64_t)ri->voi_lut.n)
                    x = ri->voi_lut.n - 1;
                y = ri->voi_lut.data[x] / (double)((1u << ri->voi_lut.bits) - 1);
            } else {
                y = voi(fn, c, w, m);
            }
            if (invert)
                y = 1 - y;
            lut[k] = clamp8(y * 255.0);
        }
        if (in_place) {
            lut16(px, n, mask, flip, base, lut, g);
        } else {
            for (size_t i = 0; i < n; i++)
                g[i] = lut[v[i] - lo];
        }
        free(lut);
        free(v);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        double m = ri->float_data ? float_sample(ri, px, i) : modality(ri, (double)sample(ri, px, i));
        double y = isfinite(m) ? voi(fn, c, w, m) : 0;
        if (invert)
            y = 1 - y;
        g[i] = clamp8(y * 255.0);
    }
    return 0;
}

/* Crop (region) and scale into the viewport keeping the aspect ratio:
 * area-averaging when shrinking, bilinear when enlarging. */
static int resample(const uint8_t *src, unsigned sw_, unsigned sh_, unsigned ch,
                    const struct render_params *p, struct image8 *out, char *err, size_t err_cap)
{
    double rx = 0, ry = 0, rw = sw_, rh = sh_;
    bool flip_x = false, flip_y = false;
    if (p->has_region) {
        rx = p->sx;
        ry = p->sy;
        rw = p->sw;
        rh = p->sh;
        if (rw < 0) { /* PS3.18: a negative extent flips */
            flip_x = true;
            rw = -rw;
            rx -= rw;
        }
        if (rh < 0) {
            flip_y = true;
            rh = -rh;
            ry -= rh;
        }
        if (rx < 0 || ry < 0 || rx + rw > sw_ + 1e-9 || ry + rh > sh_ + 1e-9 || rw < 1 || rh < 1) {
            snprintf(err, err_cap, "viewport: the source region lies outside the image (%ux%u)",
                     sw_, sh_);
            return -EINVAL;
        }
    }
    unsigned ow, oh;
    if (p->vw && p->vh) {
        double s = fmin(p->vw / rw, p->vh / rh);
        ow = (unsigned)lround(rw * s);
        oh = (unsigned)lround(rh * s);
        if (ow < 1)
            ow = 1;
        if (oh < 1)
            oh = 1;
        if (ow > p->vw)
            ow = p->vw;
        if (oh > p->vh)
            oh = p->vh;
    } else {
        ow = (unsigned)lround(rw);
        oh = (unsigned)lround(rh);
    }
    if ((uint64_t)ow * oh > MAX_OUT_PIXELS)
        return -E2BIG;
    out->w = ow;
    out->h = oh;
    out->channels = ch;
    out->px = malloc((size_t)ow * oh * ch);
    if (!out->px)
        return -ENOMEM;
    if (ow == (unsigned)rw && oh == (unsigned)rh && rx == floor(rx) && ry == floor(ry) &&
        rw == floor(rw) && rh == floor(rh) && !flip_x && !flip_y) {
        /* no scaling: copy the region's rows */
        for (unsigned y = 0; y < oh; y++)
            memcpy(out->px + (size_t)y * ow * ch,
                   src + (((size_t)ry + y) * sw_ + (size_t)rx) * ch, (size_t)ow * ch);
        return 0;
    }
    double sx = rw / ow, sy = rh / oh;
    for (unsigned y = 0; y < oh; y++) {
        unsigned yy = flip_y ? oh - 1 - y : y;
        for (unsigned x = 0; x < ow; x++) {
            unsigned xx = flip_x ? ow - 1 - x : x;
            uint8_t *o = out->px + ((size_t)yy * ow + xx) * ch;
            if (sx > 1.0 || sy > 1.0) {
                /* area average of the source box */
                double x0 = rx + x * sx, x1 = x0 + sx, y0 = ry + y * sy, y1 = y0 + sy;
                for (unsigned k = 0; k < ch; k++) {
                    double acc = 0, wsum = 0;
                    for (unsigned j = (unsigned)floor(y0); j < sh_ && j < (unsigned)ceil(y1); j++) {
                        double wy = fmin(j + 1.0, y1) - fmax((double)j, y0);
                        if (wy <= 0)
                            continue;
                        for (unsigned i = (unsigned)floor(x0); i < sw_ && i < (unsigned)ceil(x1); i++) {
                            double wx = fmin(i + 1.0, x1) - fmax((double)i, x0);
                            if (wx <= 0)
                                continue;
                            acc += wx * wy * src[((size_t)j * sw_ + i) * ch + k];
                            wsum += wx * wy;
                        }
                    }
                    o[k] = clamp8(wsum > 0 ? acc / wsum : 0);
                }
            } else {
                /* bilinear at the centre of the output pixel */
                double fx = rx + (x + 0.5) * sx - 0.5, fy = ry + (y + 0.5) * sy - 0.5;
                if (fx < 0)
                    fx = 0;
                if (fy < 0)
                    fy = 0;
                unsigned x0 = (unsigned)fx, y0 = (unsigned)fy;
                unsigned x1 = x0 + 1 < sw_ ? x0 + 1 : x0, y1 = y0 + 1 < sh_ ? y0 + 1 : y0;
                if (x0 >= sw_)
                    x0 = x1 = sw_ - 1;
                if (y0 >= sh_)
                    y0 = y1 = sh_ - 1;
                double ax = fx - x0, ay = fy - y0;
                for (unsigned k = 0; k < ch; k++) {
                    double a = src[((size_t)y0 * sw_ + x0) * ch + k];
                    double b = src[((size_t)y0 * sw_ + x1) * ch + k];
                    double cc = src[((size_t)y1 * sw_ + x0) * ch + k];
                    double d = src[((size_t)y1 * sw_ + x1) * ch + k];
                    o[k] = clamp8((a * (1 - ax) + b * ax) * (1 - ay) + (cc * (1 - ax) + d * ax) * ay);
                }
            }
        }
    }
    return 0;
}

int render_frame(const struct render_info *ri, const uint8_t *pixels, size_t len,
                 const char *photometric, const struct render_params *p, struct image8 *out,
                 char *err, size_t err_cap)
{
    memset(out, 0, sizeof(*out));
    if (!ri->is_image) {
        snprintf(err, err_cap, "this object has no image to render");
        return -ENOTSUP;
    }
    size_t n = (size_t)ri->rows * ri->cols;
    bool colour = ri->spp == 3 || !strcmp(photometric, "PALETTE COLOR");
    unsigned ch = colour ? 3 : 1;
    uint8_t *full = malloc(n * ch);
    if (!full)
        return -ENOMEM;
    int r;
    if (!strcmp(photometric, "PALETTE COLOR"))
        r = palette_to_rgb(ri, pixels, len, full);
    else if (ri->spp == 3)
        r = colour_to_rgb(ri, pixels, len, photometric, full);
    else if (ri->spp == 1)
        r = gray_to_8(ri, pixels, len, photometric, p, full);
    else
        r = -ENOTSUP;
    if (r == 0) {
        struct render_params q = *p;
        r = resample(full, ri->cols, ri->rows, ch, &q, out, err, err_cap);
    } else if (!err[0]) {
        snprintf(err, err_cap, r == -ENOTSUP ? "pixel format %s with %u samples is not supported"
                                             : "the frame is shorter than its description (%s)",
                 photometric, ri->spp);
    }
    free(full);
    return r;
}
