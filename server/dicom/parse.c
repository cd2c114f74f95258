/*
 * parse.c - Part 10 reader, see dcm.h.
 *
 * A pull parser over a buffered source (fd or memory, optionally inflated).
 * Large values are skipped with a seek, so parsing a 1 GiB multi-frame file
 * touches only its headers. Every length read from the input is checked
 * against what remains before it is used.
 */
#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/arena.h"
#include "dicom/dcm.h"
#include "dicom/dict.h"
#include "dicom/ts.h"
#include "dicom/vr.h"
#include "core/banned.h"

#define SRC_BUF (64 * 1024)
#define SRC_ZIN (64 * 1024)
#define NO_END UINT64_MAX

/* ---- source: buffered reads over fd or memory, optionally inflating ---- */

struct src {
    int fd;              /* -1 for memory */
    const uint8_t *mem;  /* memory source */
    uint64_t raw_size;   /* bytes in the file / memory */
    uint64_t raw_pos;    /* next raw byte to fetch */
    uint8_t *buf;        /* window of the logical stream */
    size_t buf_len;      /* valid bytes in buf */
    size_t buf_off;      /* next unread byte in buf */
    uint64_t pos;        /* logical position of buf[buf_off] */
    bool own_buf;        /* buf is malloc'ed (else points into mem) */
    bool inflating;
    bool z_end;          /* inflate reached the end of the deflate stream */
    z_stream z;
    uint8_t *zin;
};

struct parser {
    struct src s;
    struct dcm_file *f;
    struct dcm_opts o;
    bool big;            /* dataset byte order */
    uint32_t n_elems;
    uint64_t loaded;
    uint32_t n_frags;
    char *err;
    size_t err_cap;
    /* scratch element vectors, one per depth */
    struct dcm_elem *scratch[DCM_MAX_DEPTH + 2];
    uint32_t scratch_cap[DCM_MAX_DEPTH + 2];
};

static int fail(struct parser *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int r, const char *fmt, ...)
{
    if (p->err && p->err_cap && !p->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->err_cap, fmt, ap);
        va_end(ap);
    }
    return r;
}

static uint64_t src_remaining(const struct src *s)
{
    if (s->inflating)
        return NO_END; /* unknown until the stream ends */
    uint64_t avail = s->buf_len - s->buf_off;
    return avail + (s->raw_size - s->raw_pos);
}

/* Reads more raw bytes into dst; returns bytes read, 0 at end, <0 error. */
static ssize_t src_raw_read(struct src *s, uint8_t *dst, size_t cap)
{
    uint64_t left = s->raw_size - s->raw_pos;
    if (left == 0)
        return 0;
    size_t want = cap < left ? cap : (size_t)left;
    if (s->fd < 0) {
        memcpy(dst, s->mem + s->raw_pos, want);
        s->raw_pos += want;
        return (ssize_t)want;
    }
    for (;;) {
        ssize_t n = pread(s->fd, dst, want, (off_t)s->raw_pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -EIO;
        if (n == 0) { /* file shrank under us */
            s->raw_size = s->raw_pos;
            return 0;
        }
        s->raw_pos += (uint64_t)n;
        return n;
    }
}

/* Appends at least one more byte of logical stream to buf (after compacting).
 * Returns 1 when bytes were added, 0 at end of stream, <0 on error. */
static int src_fill(struct src *s)
{
    if (!s->own_buf) /* memory source without inflate: everything is there */
        return 0;
    if (s->buf_off > 0) {
        memmove(s->buf, s->buf + s->buf_off, s->buf_len - s->buf_off);
        s->buf_len -= s->buf_off;
        s->buf_off = 0;
    }
    if (s->buf_len == SRC_BUF)
        return 1; /* already full */
    if (!s->inflating) {
        ssize_t n = src_raw_read(s, s->buf + s->buf_len, SRC_BUF - s->buf_len);
        if (n < 0)
            return (int)n;
        s->buf_len += (size_t)n;
        return n > 0;
    }
    if (s->z_end)
        return 0;
    size_t before = s->buf_len;
    while (s->buf_len == before) {
        if (s->z.avail_in == 0) {
            ssize_t n = src_raw_read(s, s->zin, SRC_ZIN);
            if (n < 0)
                return (int)n;
            if (n == 0)
                return 0; /* truncated deflate stream: treat as end */
            s->z.next_in = s->zin;
            s->z.avail_in = (uInt)n;
        }
        s->z.next_out = s->buf + s->buf_len;
        s->z.avail_out = (uInt)(SRC_BUF - s->buf_len);
        int zr = inflate(&s->z, Z_NO_FLUSH);
        s->buf_len = SRC_BUF - s->z.avail_out;
        if (zr == Z_STREAM_END) {
            s->z_end = true;
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -EBADMSG;
    }
    return s->buf_len > before;
}

/* Makes n (<= SRC_BUF) bytes available at the cursor; returns a pointer to
 * them or NULL at a premature end (*r set). */
static const uint8_t *src_peek(struct src *s, size_t n, int *r)
{
    while (s->buf_len - s->buf_off < n) {
        int fr = src_fill(s);
        if (fr <= 0) {
            *r = fr < 0 ? fr : -ENODATA;
            return NULL;
        }
    }
    return s->buf + s->buf_off;
}

static void src_advance(struct src *s, size_t n)
{
    s->buf_off += n;
    s->pos += n;
}

static int src_read(struct src *s, uint8_t *dst, uint64_t n)
{
    while (n > 0) {
        size_t avail = s->buf_len - s->buf_off;
        if (avail == 0) {
            int fr = src_fill(s);
            if (fr <= 0)
                return fr < 0 ? fr : -ENODATA;
            continue;
        }
        size_t take = n < avail ? (size_t)n : avail;
        memcpy(dst, s->buf + s->buf_off, take);
        src_advance(s, take);
        dst += take;
        n -= take;
    }
    return 0;
}

static int src_skip(struct src *s, uint64_t n)
{
    size_t avail = s->buf_len - s->buf_off;
    if (n <= avail) {
        src_advance(s, (size_t)n);
        return 0;
    }
    if (!s->inflating) {
        uint64_t rest = n - avail;
        if (rest > s->raw_size - s->raw_pos)
            return -ENODATA;
        s->pos += n;
        s->raw_pos += rest;
        if (s->own_buf) {
            s->buf_len = 0;
            s->buf_off = 0;
        } else {
            s->buf_off = (size_t)s->raw_pos; /* memory: buf is mem */
        }
        return 0;
    }
    src_advance(s, avail);
    n -= avail;
    while (n > 0) {
        s->buf_off = s->buf_len;
        int fr = src_fill(s);
        if (fr <= 0)
            return fr < 0 ? fr : -ENODATA;
        size_t got = s->buf_len - s->buf_off;
        size_t take = n < got ? (size_t)n : got;
        src_advance(s, take);
        n -= take;
    }
    return 0;
}

static bool src_at_end(struct src *s)
{
    int r = 0;
    return src_peek(s, 1, &r) == NULL;
}

/* Switches to inflating everything after the current position. */
static int src_start_inflate(struct src *s)
{
    if (!s->own_buf) {
        /* memory source: convert to an owned window over the raw bytes */
        s->raw_pos = s->pos;
        s->buf = malloc(SRC_BUF);
        if (!s->buf)
            return -ENOMEM;
        s->own_buf = true;
    } else {
        /* give the unread buffered raw bytes back to the raw cursor */
        s->raw_pos -= s->buf_len - s->buf_off;
    }
    s->buf_len = 0;
    s->buf_off = 0;
    s->zin = malloc(SRC_ZIN);
    if (!s->zin)
        return -ENOMEM;
    memset(&s->z, 0, sizeof(s->z));
    if (inflateInit2(&s->z, -MAX_WBITS) != Z_OK)
        return -ENOMEM;
    s->inflating = true;
    /* logical positions restart at 0 in the inflated stream */
    s->pos = 0;
    return 0;
}

static void src_release(struct src *s)
{
    if (s->inflating)
        inflateEnd(&s->z);
    if (s->own_buf)
        free(s->buf);
    free(s->zin);
}

/* ---- helpers ---- */

static inline uint16_t rd16(const uint8_t *b, bool big)
{
    return big ? (uint16_t)(b[0] << 8 | b[1]) : (uint16_t)(b[1] << 8 | b[0]);
}

static inline uint32_t rd32(const uint8_t *b, bool big)
{
    return big ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
               : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static void swap_value(uint8_t *v, uint32_t len, unsigned unit)
{
    if (unit <= 1)
        return;
    for (uint32_t i = 0; i + unit <= len; i += unit) {
        for (unsigned a = 0, b = unit - 1; a < b; a++, b--) {
            uint8_t t = v[i + a];
            v[i + a] = v[i + b];
            v[i + b] = t;
        }
    }
}

static bool is_pixel_tag(uint32_t tag)
{
    return tag == TAG_PIXEL_DATA || tag == TAG_FLOAT_PIXEL_DATA ||
           tag == TAG_DOUBLE_FLOAT_PIXEL_DATA;
}

/* VR for an implicitly encoded element. */
static uint16_t implicit_vr(uint32_t tag, uint16_t *flags)
{
    *flags |= DCM_E_IMPLICIT;
    uint16_t g = TAG_GROUP(tag), e = TAG_ELEM(tag);
    if (e == 0x0000)
        return VR_UL;
    if ((g & 1) && e >= 0x0010 && e <= 0x00FF)
        return VR_LO; /* private creator */
    const struct dict_entry *d = dict_lookup_tag(tag);
    if (!d)
        return VR_UN;
    if (tag == TAG_PIXEL_DATA)
        return VR_OW; /* PS3.5 A.1: implicit VR pixel data is OW */
    return d->vr;
}

static int push_elem(struct parser *p, unsigned depth, uint32_t *n, const struct dcm_elem *e)
{
    if (++p->n_elems > p->o.max_elems)
        return fail(p, -E2BIG, "more than %u elements", p->o.max_elems);
    if (*n == p->scratch_cap[depth]) {
        uint32_t cap = p->scratch_cap[depth] ? p->scratch_cap[depth] * 2 : 64;
        struct dcm_elem *v = realloc(p->scratch[depth], (size_t)cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        p->scratch[depth] = v;
        p->scratch_cap[depth] = cap;
    }
    p->scratch[depth][(*n)++] = *e;
    return 0;
}

static int cmp_elem(const void *a, const void *b)
{
    const struct dcm_elem *x = a, *y = b;
    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    /* keep file order among duplicates: compare offsets */
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* PS3.5 A.1 / PS3.6: "US or SS" attributes read with implicit VR take
 * their VR from Pixel Representation (0028,0103) of the same dataset. */
static void resolve_ambiguous(struct dcm_elem *v, uint32_t n)
{
    int pixrep = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (v[i].tag == TAG(0x0028, 0x0103) && v[i].value && v[i].len >= 2)
            pixrep = v[i].value[0] | v[i].value[1] << 8;
    }
    if (pixrep != 1)
        return;
    for (uint32_t i = 0; i < n; i++) {
        if (!(v[i].flags & DCM_E_IMPLICIT) || v[i].vr != VR_US)
            continue;
        const struct dict_entry *d = dict_lookup_tag(v[i].tag);
        if (d && d->vr == VR_US && d->vr_alt == VR_SS)
            v[i].vr = VR_SS;
    }
}

/* Moves scratch[depth][0..n) into arena memory as out's elements. */
static int finish_ds(struct parser *p, unsigned depth, uint32_t n, struct dcm_ds *out)
{
    struct dcm_elem *v = p->scratch[depth];
    resolve_ambiguous(v, n);
    bool sorted = true;
    for (uint32_t i = 1; i < n; i++) {
        if (v[i].tag <= v[i - 1].tag) {
            sorted = false;
            break;
        }
    }
    if (!sorted) {
        qsort(v, n, sizeof(*v), cmp_elem);
        uint32_t w = 0;
        for (uint32_t i = 0; i < n; i++)
            if (w == 0 || v[i].tag != v[w - 1].tag)
                v[w++] = v[i];
        n = w;
    }
    out->n = n;
    out->elems = NULL;
    if (n == 0)
        return 0;
    out->elems = arena_alloc(p->f->arena, (size_t)n * sizeof(*v));
    if (!out->elems)
        return fail(p, -E2BIG, "dataset too large");
    memcpy(out->elems, v, (size_t)n * sizeof(*v));
    return 0;
}

static int read_tag_len(struct parser *p, bool big, uint32_t *tag, uint32_t *len)
{
    int r = 0;
    const uint8_t *b = src_peek(&p->s, 8, &r);
    if (!b)
        return r;
    *tag = (uint32_t)rd16(b, big) << 16 | rd16(b + 2, big);
    *len = rd32(b + 4, big);
    src_advance(&p->s, 8);
    return 0;
}

static int parse_ds(struct parser *p, struct dcm_ds *out, uint64_t end, unsigned depth,
                    bool implicit, bool big, bool in_item, bool *seq_ended);

/* Parses the items of a sequence value whose content starts at the cursor. */
static int parse_seq(struct parser *p, struct dcm_elem *e, uint64_t end, unsigned depth,
                     bool implicit, bool big)
{
    struct dcm_ds items_small[8];
    struct dcm_ds *items = items_small;
    uint32_t n = 0, cap = 8;
    int r = 0;
    uint64_t start = p->s.pos;
    for (;;) {
        if (end != NO_END && p->s.pos >= end)
            break;
        if (end == NO_END && src_at_end(&p->s)) {
            r = fail(p, -EBADMSG, "sequence (%04X,%04X) at offset %llu has no delimiter",
                     TAG_GROUP(e->tag), TAG_ELEM(e->tag), (unsigned long long)e->offset);
            goto out;
        }
        uint32_t tag, len;
        r = read_tag_len(p, big, &tag, &len);
        if (r < 0) {
            r = fail(p, -EBADMSG, "sequence (%04X,%04X) is truncated", TAG_GROUP(e->tag),
                     TAG_ELEM(e->tag));
            goto out;
        }
        if (tag == TAG_SEQ_DELIM)
            break;
        if (tag == TAG_ITEM_DELIM)
            continue; /* stray item delimiter: tolerated, as other readers do */
        if (tag != TAG_ITEM) {
            r = fail(p, -EBADMSG,
                     "sequence (%04X,%04X): expected an item, found (%04X,%04X) at offset %llu",
                     TAG_GROUP(e->tag), TAG_ELEM(e->tag), TAG_GROUP(tag), TAG_ELEM(tag),
                     (unsigned long long)(p->s.pos - 8));
            goto out;
        }
        if (n == cap) {
            if (cap >= (1u << 20)) {
                r = fail(p, -E2BIG, "sequence with too many items");
                goto out;
            }
            struct dcm_ds *ni = malloc((size_t)cap * 2 * sizeof(*ni));
            if (!ni) {
                r = -ENOMEM;
                goto out;
            }
            memcpy(ni, items, (size_t)n * sizeof(*ni));
            if (items != items_small)
                free(items);
            items = ni;
            cap *= 2;
        }
        struct dcm_ds *it = &items[n++];
        it->offset = p->s.pos;
        uint64_t item_end = NO_END;
        if (len != DCM_UNDEFINED) {
            if (len > src_remaining(&p->s) || (end != NO_END && p->s.pos + len > end)) {
                r = fail(p, -EBADMSG, "item of (%04X,%04X) at offset %llu overruns its sequence",
                         TAG_GROUP(e->tag), TAG_ELEM(e->tag),
                         (unsigned long long)(p->s.pos - 8));
                goto out;
            }
            item_end = p->s.pos + len;
        }
        bool seq_ended = false;
        r = parse_ds(p, it, item_end, depth + 1, implicit, big, len == DCM_UNDEFINED,
                     &seq_ended);
        if (r < 0)
            goto out;
        if (seq_ended)
            break;
    }
    e->len = (uint32_t)(p->s.pos - start < DCM_UNDEFINED ? p->s.pos - start : 0);
    e->n_items = n;
    if (n) {
        e->items = arena_alloc(p->f->arena, (size_t)n * sizeof(*items));
        if (!e->items) {
            r = fail(p, -E2BIG, "dataset too large");
            goto out;
        }
        memcpy(e->items, items, (size_t)n * sizeof(*items));
    }
out:
    if (items != items_small)
        free(items);
    return r;
}

/* Reads the items of encapsulated pixel data (undefined length). */
static int parse_encaps(struct parser *p, struct dcm_elem *e, bool big)
{
    struct dcm_frag *v = NULL;
    uint32_t n = 0, cap = 0;
    int r = 0;
    for (;;) {
        uint32_t tag, len;
        r = read_tag_len(p, big, &tag, &len);
        if (r < 0) {
            r = fail(p, -EBADMSG, "encapsulated pixel data is truncated (no sequence delimiter)");
            goto out;
        }
        if (tag == TAG_SEQ_DELIM)
            break;
        if (tag != TAG_ITEM) {
            r = fail(p, -EBADMSG,
                     "encapsulated pixel data: expected an item, found (%04X,%04X) at offset %llu",
                     TAG_GROUP(tag), TAG_ELEM(tag), (unsigned long long)(p->s.pos - 8));
            goto out;
        }
        if (len == DCM_UNDEFINED || len > src_remaining(&p->s)) {
            r = fail(p, -EBADMSG, "pixel data fragment at offset %llu overruns the file",
                     (unsigned long long)(p->s.pos - 8));
            goto out;
        }
        if (++p->n_frags > p->o.max_frags) {
            r = fail(p, -E2BIG, "more than %u pixel data fragments", p->o.max_frags);
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct dcm_frag *nv = realloc(v, (size_t)cap * sizeof(*nv));
            if (!nv) {
                r = -ENOMEM;
                goto out;
            }
            v = nv;
        }
        v[n].offset = p->s.pos;
        v[n].len = len;
        n++;
        if (n == 1 && len > 0 && len <= ((uint32_t)16 << 20)) {
            /* the Basic Offset Table is loaded: layout needs it */
            e->value = arena_alloc(p->f->arena, (size_t)len + 1);
            if (!e->value) {
                r = fail(p, -E2BIG, "basic offset table too large");
                goto out;
            }
            r = src_read(&p->s, e->value, len);
            if (r == 0 && big)
                swap_value(e->value, len, 4);
        } else {
            r = src_skip(&p->s, len);
        }
        if (r < 0) {
            r = fail(p, -EBADMSG, "pixel data fragment is truncated");
            goto out;
        }
    }
    if (n == 0) {
        r = fail(p, -EBADMSG, "encapsulated pixel data has no Basic Offset Table item");
        goto out;
    }
    e->frags = arena_alloc(p->f->arena, (size_t)n * sizeof(*v));
    if (!e->frags) {
        r = fail(p, -E2BIG, "too many fragments");
        goto out;
    }
    memcpy(e->frags, v, (size_t)n * sizeof(*v));
    e->n_frags = n;
    e->flags |= DCM_E_ENCAPS | DCM_E_BULK;
out:
    free(v);
    return r;
}

/*
 * Parses elements into out until: end (defined-length item / dataset), an
 * item delimiter (in_item), or the end of the stream (top level).
 */
static int parse_ds(struct parser *p, struct dcm_ds *out, uint64_t end, unsigned depth,
                    bool implicit, bool big, bool in_item, bool *seq_ended)
{
    if (depth > DCM_MAX_DEPTH)
        return fail(p, -EBADMSG, "sequences nested deeper than %d", DCM_MAX_DEPTH);
    uint32_t n = 0;
    int r = 0;
    out->offset = p->s.pos;
    for (;;) {
        if (end != NO_END && p->s.pos >= end)
            break;
        if (end == NO_END && src_at_end(&p->s)) {
            if (in_item)
                return fail(p, -EBADMSG, "item at offset %llu has no delimiter",
                            (unsigned long long)out->offset);
            break;
        }
        struct dcm_elem e;
        memset(&e, 0, sizeof(e));
        uint64_t el_start = p->s.pos;
        const uint8_t *b = src_peek(&p->s, 8, &r);
        if (!b) {
            /* a few trailing bytes after the last element: tolerated at top
             * level (padding), an error inside an item */
            if (depth == 0 && !in_item) {
                r = 0;
                break;
            }
            return fail(p, -EBADMSG, "dataset truncated at offset %llu",
                        (unsigned long long)el_start);
        }
        e.tag = (uint32_t)rd16(b, big) << 16 | rd16(b + 2, big);
        if (e.tag == TAG_ITEM_DELIM) {
            src_advance(&p->s, 8);
            if (in_item)
                break;
            continue; /* stray delimiter */
        }
        if (e.tag == TAG_SEQ_DELIM) {
            src_advance(&p->s, 8);
            if (in_item) {
                /* missing item delimiter before the sequence delimiter */
                *seq_ended = true;
                break;
            }
            continue;
        }
        if (TAG_GROUP(e.tag) == 0xFFFE)
            return fail(p, -EBADMSG, "item tag (FFFE,%04X) outside a sequence at offset %llu",
                        TAG_ELEM(e.tag), (unsigned long long)el_start);
        uint32_t len;
        bool el_implicit = implicit;
        if (!implicit) {
            uint16_t vr = VR_CODE(b[4], b[5]);
            if (vr_is_known(vr)) {
                e.vr = vr;
                if (vr_has_long_length(vr)) {
                    const uint8_t *b12 = src_peek(&p->s, 12, &r);
                    if (!b12)
                        return fail(p, -EBADMSG, "element header truncated at offset %llu",
                                    (unsigned long long)el_start);
                    len = rd32(b12 + 8, big);
                    src_advance(&p->s, 12);
                } else {
                    len = rd16(b + 6, big);
                    src_advance(&p->s, 8);
                }
            } else {
                /* not a VR: some writers switch to implicit VR mid-file */
                el_implicit = true;
            }
        }
        if (el_implicit) {
            len = rd32(b + 4, big);
            e.vr = implicit_vr(e.tag, &e.flags);
            src_advance(&p->s, 8);
        } else if (e.vr == VR_UN && !(TAG_GROUP(e.tag) & 1) && len != DCM_UNDEFINED) {
            /* CP-246: a public attribute sent as UN keeps its dictionary VR;
             * its value is encoded as in Implicit VR Little Endian */
            uint16_t fl = 0;
            uint16_t dvr = implicit_vr(e.tag, &fl);
            if (dvr != VR_UN) {
                e.vr = dvr;
                e.flags |= DCM_E_IMPLICIT;
                if (dvr == VR_SQ) {
                    if (len > src_remaining(&p->s))
                        return fail(p, -EBADMSG, "element (%04X,%04X) overruns the file",
                                    TAG_GROUP(e.tag), TAG_ELEM(e.tag));
                    e.offset = p->s.pos;
                    r = parse_seq(p, &e, p->s.pos + len, depth, true, false);
                    if (r < 0)
                        return r;
                    e.len = len;
                    r = push_elem(p, depth, &n, &e);
                    if (r < 0)
                        return r;
                    continue;
                }
            }
        }
        if (p->o.stop_before_pixels && depth == 0 && e.tag >= TAG_PIXEL_DATA)
            break;
        e.offset = p->s.pos;
        e.len = len;
        if (len == DCM_UNDEFINED) {
            e.flags |= DCM_E_UNDEF_LEN;
            if (is_pixel_tag(e.tag) || ((e.vr == VR_OB || e.vr == VR_OW) && depth == 0)) {
                r = parse_encaps(p, &e, big);
            } else if (e.vr == VR_SQ || e.vr == VR_UN || (e.flags & DCM_E_IMPLICIT)) {
                /* PS3.5 6.2.2: UN with undefined length is a sequence in
                 * Implicit VR Little Endian */
                bool imp = e.vr == VR_SQ ? implicit : true;
                bool be = e.vr == VR_SQ ? big : false;
                e.vr = VR_SQ;
                r = parse_seq(p, &e, NO_END, depth, imp, be);
            } else {
                char vn[3];
                vr_name(e.vr, vn);
                return fail(p, -EBADMSG,
                            "element (%04X,%04X) with VR %s has an undefined length at offset %llu",
                            TAG_GROUP(e.tag), TAG_ELEM(e.tag), vn,
                            (unsigned long long)el_start);
            }
            if (r < 0)
                return r;
        } else {
            if (len > src_remaining(&p->s) || (end != NO_END && p->s.pos + len > end))
                return fail(p, -EBADMSG,
                            "element (%04X,%04X) at offset %llu: length %u overruns the %s",
                            TAG_GROUP(e.tag), TAG_ELEM(e.tag), (unsigned long long)el_start, len,
                            end != NO_END && p->s.pos + len > end ? "enclosing item" : "file");
            if (e.vr == VR_SQ) {
                r = parse_seq(p, &e, p->s.pos + len, depth, implicit, big);
                if (r < 0)
                    return r;
                e.len = len;
            } else if (is_pixel_tag(e.tag) ||
                       (vr_is_bulk_binary(e.vr) && len > p->o.bulk_threshold)) {
                e.flags |= DCM_E_BULK;
                r = src_skip(&p->s, len);
                if (r < 0)
                    return fail(p, -EBADMSG, "element (%04X,%04X) is truncated",
                                TAG_GROUP(e.tag), TAG_ELEM(e.tag));
            } else if (len > 0) {
                p->loaded += len;
                if (p->loaded > p->o.max_loaded)
                    return fail(p, -E2BIG, "more than %llu bytes of non-bulk values",
                                (unsigned long long)p->o.max_loaded);
                e.value = arena_alloc(p->f->arena, (size_t)len + 1);
                if (!e.value)
                    return fail(p, -E2BIG, "dataset too large for memory limits");
                r = src_read(&p->s, e.value, len);
                if (r < 0)
                    return fail(p, -EBADMSG, "element (%04X,%04X) is truncated",
                                TAG_GROUP(e.tag), TAG_ELEM(e.tag));
                e.value[len] = 0;
                if (big)
                    swap_value(e.value, len, vr_swap_unit(e.vr));
            }
        }
        r = push_elem(p, depth, &n, &e);
        if (r < 0)
            return r;
    }
    return finish_ds(p, depth, n, out);
}

/* Reads the File Meta Information (group 0002, always Explicit VR LE). */
static int parse_meta(struct parser *p)
{
    uint32_t n = 0;
    int r = 0;
    for (;;) {
        const uint8_t *b = src_peek(&p->s, 8, &r);
        if (!b)
            break;
        if (rd16(b, false) != 0x0002)
            break;
        struct dcm_elem e;
        memset(&e, 0, sizeof(e));
        e.tag = TAG(0x0002, rd16(b + 2, false));
        uint16_t vr = VR_CODE(b[4], b[5]);
        uint32_t len;
        if (!vr_is_known(vr)) {
            /* implicit VR meta (seen in old files) */
            e.vr = implicit_vr(e.tag, &e.flags);
            len = rd32(b + 4, false);
            src_advance(&p->s, 8);
        } else if (vr_has_long_length(vr)) {
            const uint8_t *b12 = src_peek(&p->s, 12, &r);
            if (!b12)
                return fail(p, -EBADMSG, "file meta information is truncated");
            e.vr = vr;
            len = rd32(b12 + 8, false);
            src_advance(&p->s, 12);
        } else {
            e.vr = vr;
            len = rd16(b + 6, false);
            src_advance(&p->s, 8);
        }
        if (len == DCM_UNDEFINED || len > src_remaining(&p->s) || len > (1u << 20))
            return fail(p, -EBADMSG, "file meta element (0002,%04X) has a bad length %u",
                        TAG_ELEM(e.tag), len);
        e.offset = p->s.pos;
        e.len = len;
        if (len) {
            e.value = arena_alloc(p->f->arena, (size_t)len + 1);
            if (!e.value)
                return -ENOMEM;
            r = src_read(&p->s, e.value, len);
            if (r < 0)
                return fail(p, -EBADMSG, "file meta information is truncated");
            e.value[len] = 0;
        }
        r = push_elem(p, 0, &n, &e);
        if (r < 0)
            return r;
    }
    return finish_ds(p, 0, n, &p->f->meta);
}

/* Guesses the encoding of a dataset without usable meta information from
 * its first element. */
static unsigned sniff_encoding(struct src *s)
{
    int r = 0;
    const uint8_t *b = src_peek(s, 8, &r);
    if (!b)
        return TS_IMPLICIT;
    if (vr_is_known(VR_CODE(b[4], b[5])))
        return b[0] == 0 && b[1] != 0 ? TS_BIG : 0;
    return TS_IMPLICIT;
}

static int parse_all(struct parser *p)
{
    struct dcm_file *f = p->f;
    int r = 0;
    /* preamble + "DICM"; files without them (raw datasets) are accepted */
    bool has_dicm = false;
    const uint8_t *b = src_peek(&p->s, 132, &r);
    if (b && memcmp(b + 128, "DICM", 4) == 0) {
        src_advance(&p->s, 132);
        has_dicm = true;
    } else {
        r = 0;
        b = src_peek(&p->s, 4, &r);
        if (b && memcmp(b, "DICM", 4) == 0) {
            src_advance(&p->s, 4);
            has_dicm = true;
        }
        r = 0;
    }
    r = parse_meta(p);
    if (r < 0)
        return r;
    const struct dcm_elem *ts = dcm_find(&f->meta, TAG_TRANSFER_SYNTAX_UID);
    const char *uid = "";
    if (ts && ts->value) {
        size_t l = ts->len;
        while (l && (ts->value[l - 1] == ' ' || ts->value[l - 1] == 0))
            l--;
        uid = arena_strndup(f->arena, (const char *)ts->value, l);
        if (!uid)
            return -ENOMEM;
    }
    f->ts_uid = uid;
    if (uid[0]) {
        f->ts_flags = ts_flags_of(uid);
    } else {
        if (f->meta.n == 0 && src_at_end(&p->s))
            return fail(p, -EBADMSG, "not a DICOM file (empty)");
        if (!has_dicm && f->meta.n == 0) {
            /* a raw dataset (no preamble) must start with a group 0008 element */
            int pr = 0;
            const uint8_t *h = src_peek(&p->s, 4, &pr);
            if (!h || !((h[0] == 0x08 && h[1] == 0) || (h[0] == 0 && h[1] == 0x08)))
                return fail(p, -EBADMSG, "not a DICOM file (no \"DICM\" prefix and no "
                                         "dataset start)");
        }
        f->ts_flags = sniff_encoding(&p->s);
    }
    f->dataset_offset = p->s.pos;
    if (f->ts_flags & TS_DEFLATED) {
        r = src_start_inflate(&p->s);
        if (r < 0)
            return r;
        f->deflated = true;
    }
    f->big_endian = (f->ts_flags & TS_BIG) != 0;
    p->big = f->big_endian;
    bool seq_ended = false;
    r = parse_ds(p, &f->ds, NO_END, 0, (f->ts_flags & TS_IMPLICIT) != 0, p->big, false,
                 &seq_ended);
    if (r == -ENODATA)
        r = fail(p, -EBADMSG, "file is truncated");
    if (r < 0)
        return r;
    if (f->ds.n == 0 && f->meta.n == 0)
        return fail(p, -EBADMSG, "not a DICOM file (no elements)");
    return 0;
}

static int parse_common(struct parser *p, const struct dcm_opts *opts, struct dcm_file **out,
                        char *err, size_t err_cap)
{
    int r;
    if (err && err_cap)
        err[0] = 0;
    p->err = err;
    p->err_cap = err_cap;
    if (opts)
        p->o = *opts;
    if (!p->o.bulk_threshold)
        p->o.bulk_threshold = 1024;
    if (!p->o.max_elems)
        p->o.max_elems = 1000000;
    if (!p->o.max_loaded)
        p->o.max_loaded = (uint64_t)64 << 20;
    if (!p->o.max_frags)
        p->o.max_frags = 1000000;
    struct dcm_file *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->arena = arena_new((size_t)p->o.max_loaded + ((size_t)256 << 20));
    if (!f->arena) {
        free(f);
        return -ENOMEM;
    }
    f->file_size = p->s.raw_size;
    p->f = f;
    r = parse_all(p);
    for (unsigned i = 0; i < YY_ARRAY_LEN(p->scratch); i++)
        free(p->scratch[i]);
    src_release(&p->s);
    if (r < 0) {
        if (r == -ENODATA)
            r = fail(p, -EBADMSG, "file is truncated");
        dcm_file_free(f);
        return r;
    }
    *out = f;
    return 0;
}

int dcm_parse_fd(int fd, const struct dcm_opts *opts, struct dcm_file **out, char *err,
                 size_t err_cap)
{
    struct parser p;
    memset(&p, 0, sizeof(p));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -EIO;
    p.s.fd = fd;
    p.s.raw_size = (uint64_t)st.st_size;
    p.s.buf = malloc(SRC_BUF);
    if (!p.s.buf)
        return -ENOMEM;
    p.s.own_buf = true;
    return parse_common(&p, opts, out, err, err_cap);
}

int dcm_parse_mem(const uint8_t *data, size_t len, const struct dcm_opts *opts,
                  struct dcm_file **out, char *err, size_t err_cap)
{
    struct parser p;
    memset(&p, 0, sizeof(p));
    p.s.fd = -1;
    p.s.mem = data;
    p.s.raw_size = len;
    p.s.raw_pos = len;
    p.s.buf = (uint8_t *)data;
    p.s.buf_len = len;
    p.s.own_buf = false;
    return parse_common(&p, opts, out, err, err_cap);
}

void dcm_file_free(struct dcm_file *f)
{
    if (!f)
        return;
    arena_free(f->arena);
    free(f);
}

const struct dcm_elem *dcm_find(const struct dcm_ds *ds, uint32_t tag)
{
    uint32_t lo = 0, hi = ds->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t t = ds->elems[mid].tag;
        if (t == tag)
            return &ds->elems[mid];
        if (t < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *dcm_str(const struct dcm_file *f, const struct dcm_ds *ds, uint32_t tag)
{
    const struct dcm_elem *e = dcm_find(ds, tag);
    if (!e || !e->value || (e->flags & DCM_E_BULK))
        return NULL;
    size_t a = 0, l = e->len;
    while (l && (e->value[l - 1] == ' ' || e->value[l - 1] == 0))
        l--;
    while (a < l && e->value[a] == ' ')
        a++;
    if (a == l)
        return NULL;
    return arena_strndup(f->arena, (const char *)e->value + a, l - a);
}

long dcm_long(const struct dcm_ds *ds, uint32_t tag, long def)
{
    const struct dcm_elem *e = dcm_find(ds, tag);
    if (!e || !e->value || (e->flags & DCM_E_BULK))
        return def;
    switch (e->vr) {
    case VR_US:
        return e->len >= 2 ? (long)(uint16_t)(e->value[0] | e->value[1] << 8) : def;
    case VR_SS:
        return e->len >= 2 ? (long)(int16_t)(uint16_t)(e->value[0] | e->value[1] << 8) : def;
    case VR_UL:
        return e->len >= 4 ? (long)(uint32_t)((uint32_t)e->value[0] | (uint32_t)e->value[1] << 8 |
                                              (uint32_t)e->value[2] << 16 |
                                              (uint32_t)e->value[3] << 24)
                           : def;
    case VR_SL:
        return e->len >= 4 ? (long)(int32_t)((uint32_t)e->value[0] | (uint32_t)e->value[1] << 8 |
                                             (uint32_t)e->value[2] << 16 |
                                             (uint32_t)e->value[3] << 24)
                           : def;
    case VR_IS:
    case VR_DS: {
        char *end;
        const char *s = (const char *)e->value;
        double d = strtod(s, &end);
        if (end == s)
            return def;
        return (long)d;
    }
    default:
        return def;
    }
}
