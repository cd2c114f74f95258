/*
 * json.c - DICOM JSON Model writer, see json.h.
 */
#include "core/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom/charset.h"
#include "dicom/dcm.h"
#include "dicom/json.h"
#include "dicom/vr.h"
#include "core/banned.h"

#define JSON_MAX_BULK 65536
#define JSON_MAX_TEXT ((size_t)256 << 20)

struct writer {
    const struct dcm_file *f;
    json_filter_fn filter;
    const struct json_uris *u;
    struct json_out *o;
    struct buf tmp;      /* charset conversion scratch */
    size_t bulk_cap;
};

void json_out_init(struct json_out *o)
{
    memset(o, 0, sizeof(*o));
    buf_init(&o->text, JSON_MAX_TEXT);
}

void json_out_release(struct json_out *o)
{
    buf_release(&o->text);
    free(o->bulk);
    o->bulk = NULL;
    o->n_bulk = 0;
    o->n_marks = 0;
}

/* ---- primitives ---- */

static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    uint32_t cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int json_put_string(struct buf *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    int r = buf_reserve(b, len + 2);
    if (r < 0)
        return r;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            r = buf_append(b, s + i, run - i);
            if (r < 0)
                return r;
            i = run;
            continue;
        }
        unsigned char c = s[i];
        char esc[8];
        size_t el = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            el = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2);
            el = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            el = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        } else {
            size_t n = utf8_seq_len(s + i, len - i);
            if (n == 0) {
                r = buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                r = buf_append(b, s + i, n);
                i += n;
            }
            if (r < 0)
                return r;
            continue;
        }
        r = buf_append(b, esc, el);
        if (r < 0)
            return r;
        i++;
    }
    return buf_putc(b, '"');
}

int json_put_base64(struct buf *b, const uint8_t *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = (len + 2) / 3 * 4;
    int r = buf_reserve(b, out);
    if (r < 0)
        return r;
    char *p = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *p++ = tab[v >> 18];
        *p++ = tab[(v >> 12) & 63];
        *p++ = tab[(v >> 6) & 63];
        *p++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0);
        *p++ = tab[v >> 18];
        *p++ = tab[(v >> 12) & 63];
        *p++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    b->len += out;
    b->data[b->len] = 0;
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int json_number_text(const char *s, size_t len, char *out, size_t cap)
{
    /* trim spaces */
    while (len && (s[len - 1] == ' ' || s[len - 1] == 0))
        len--;
    while (len && *s == ' ') {
        s++;
        len--;
    }
    size_t i = 0, o = 0;
    if (len == 0 || cap < len + 4)
        return -EINVAL;
    if (s[i] == '+' || s[i] == '-') {
        if (s[i] == '-')
            out[o++] = '-';
        i++;
    }
    size_t int_start = i;
    while (i < len && is_digit(s[i]))
        i++;
    size_t int_len = i - int_start;
    size_t frac_start = 0, frac_len = 0;
    if (i < len && s[i] == '.') {
        i++;
        frac_start = i;
        while (i < len && is_digit(s[i]))
            i++;
        frac_len = i - frac_start;
    }
    if (int_len == 0 && frac_len == 0)
        return -EINVAL;
    /* integer part without leading zeros */
    size_t z = int_start;
    while (z < int_start + int_len - (int_len ? 1 : 0) && s[z] == '0')
        z++;
    if (int_len == 0) {
        out[o++] = '0';
    } else {
        memcpy(out + o, s + z, int_start + int_len - z);
        o += int_start + int_len - z;
    }
    if (frac_len) {
        out[o++] = '.';
        memcpy(out + o, s + frac_start, frac_len);
        o += frac_len;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        out[o++] = 'e';
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            out[o++] = s[i++];
        size_t exp_start = i;
        while (i < len && is_digit(s[i]))
            out[o++] = s[i++];
        if (i == exp_start)
            return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    out[o] = 0;
    return 0;
}

/* ---- values ---- */

static bool multi_valued(uint16_t vr)
{
    /* PS3.5 6.2: LT, ST, UT, UR, and binary VRs are single-valued text */
    return vr != VR_LT && vr != VR_ST && vr != VR_UT && vr != VR_UR;
}

static bool trim_leading(uint16_t vr)
{
    /* PS3.5 6.2: leading spaces are significant in LT, ST, UT, UC? (UC: no,
     * trailing only), and insignificant elsewhere among text VRs */
    return vr != VR_LT && vr != VR_ST && vr != VR_UT && vr != VR_UC;
}

static void trim(const char **s, size_t *len, uint16_t vr)
{
    const char *p = *s;
    size_t l = *len;
    while (l && (p[l - 1] == ' ' || p[l - 1] == 0))
        l--;
    if (trim_leading(vr)) {
        while (l && *p == ' ') {
            p++;
            l--;
        }
    }
    *s = p;
    *len = l;
}

static int put_pn(struct buf *b, const char *s, size_t len)
{
    static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
    /* split into up to 3 groups on '=' */
    const char *g[3] = {NULL, NULL, NULL};
    size_t gl[3] = {0, 0, 0};
    size_t start = 0;
    unsigned n = 0;
    for (size_t i = 0; i <= len && n < 3; i++) {
        if (i == len || s[i] == '=') {
            g[n] = s + start;
            gl[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    int r = buf_putc(b, '{');
    bool first = true;
    for (unsigned k = 0; k < n && r == 0; k++) {
        const char *v = g[k];
        size_t vl = gl[k];
        while (vl && v[vl - 1] == ' ')
            vl--;
        if (vl == 0)
            continue;
        r = buf_printf(b, "%s\"%s\":", first ? "" : ",", groups[k]);
        if (r == 0)
            r = json_put_string(b, v, vl);
        first = false;
    }
    if (r == 0)
        r = buf_putc(b, '}');
    return r;
}

/* Writes "Value":[...] for a text VR, or nothing for an empty value. */
static int put_text_values(struct writer *w, const struct charset *cs, const struct dcm_elem *e)
{
    struct buf *b = &w->o->text;
    const char *s = (const char *)e->value;
    size_t len = e->len;
    int r;
    if (vr_uses_charset(e->vr) && !charset_passthrough(cs, e->value, e->len)) {
        buf_reset(&w->tmp);
        r = charset_to_utf8(cs, e->value, e->len, e->vr, &w->tmp);
        if (r < 0)
            return r;
        s = w->tmp.data ? w->tmp.data : "";
        len = w->tmp.len;
    }
    /* whole-value emptiness */
    {
        const char *t = s;
        size_t tl = len;
        trim(&t, &tl, VR_CS);
        if (tl == 0 && (!multi_valued(e->vr) || memchr(s, '\\', len) == NULL))
            return 0;
    }
    r = buf_puts(b, ",\"Value\":[");
    if (r < 0)
        return r;
    size_t start = 0;
    bool first = true;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && (s[i] != '\\' || !multi_valued(e->vr)))
            continue;
        const char *v = s + start;
        size_t vl = i - start;
        start = i + 1;
        trim(&v, &vl, e->vr);
        if (!first) {
            r = buf_putc(b, ',');
            if (r < 0)
                return r;
        }
        first = false;
        if (vl == 0) {
            r = buf_puts(b, "null");
        } else if (e->vr == VR_PN) {
            r = put_pn(b, v, vl);
        } else if (e->vr == VR_DS || e->vr == VR_IS) {
            char num[96];
            if (vl < sizeof(num) - 8 && json_number_text(v, vl, num, sizeof(num)) == 0)
                r = buf_puts(b, num);
            else
                r = json_put_string(b, v, vl);
        } else {
            r = json_put_string(b, v, vl);
        }
        if (r < 0)
            return r;
    }
    return buf_putc(b, ']');
}

static uint64_t rd_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static int put_float(struct buf *b, double d, bool single)
{
    if (!isfinite(d))
        return buf_puts(b, "null");
    char tmp[40];
    /* shortest text that reads back to the same value */
    for (int prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (single ? (strtof(tmp, NULL) == (float)d) : (strtod(tmp, NULL) == d))
            break;
    }
    return buf_puts(b, tmp);
}

static int put_numeric_values(struct writer *w, const struct dcm_elem *e)
{
    struct buf *b = &w->o->text;
    unsigned sz = vr_numeric_size(e->vr);
    uint32_t n = e->len / sz;
    if (n == 0 || !e->value)
        return 0;
    int r = buf_puts(b, ",\"Value\":[");
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const uint8_t *p = e->value + (size_t)i * sz;
        if (i)
            r = buf_putc(b, ',');
        if (r < 0)
            break;
        uint64_t v = rd_le(p, sz);
        switch (e->vr) {
        case VR_US: case VR_UL: case VR_UV:
            r = buf_printf(b, "%llu", (unsigned long long)v);
            break;
        case VR_SS:
            r = buf_printf(b, "%d", (int)(int16_t)(uint16_t)v);
            break;
        case VR_SL:
            r = buf_printf(b, "%d", (int)(int32_t)(uint32_t)v);
            break;
        case VR_SV:
            r = buf_printf(b, "%lld", (long long)(int64_t)v);
            break;
        case VR_FL: {
            float f;
            uint32_t u = (uint32_t)v;
            memcpy(&f, &u, 4);
            r = put_float(b, f, true);
            break;
        }
        case VR_FD: {
            double d;
            memcpy(&d, &v, 8);
            r = put_float(b, d, false);
            break;
        }
        case VR_AT:
            r = buf_printf(b, "\"%04X%04X\"", (unsigned)(v & 0xFFFF), (unsigned)(v >> 16));
            break;
        default:
            r = buf_puts(b, "null");
        }
    }
    if (r == 0)
        r = buf_putc(b, ']');
    return r;
}

static int add_bulk(struct writer *w, const struct dcm_elem *e, const char *path)
{
    struct json_out *o = w->o;
    if (o->n_bulk >= JSON_MAX_BULK || o->n_marks >= JSON_MAX_MARKS)
        return -E2BIG;
    if (o->n_bulk == w->bulk_cap) {
        size_t cap = w->bulk_cap ? w->bulk_cap * 2 : 8;
        struct json_bulk *nb = realloc(o->bulk, cap * sizeof(*nb));
        if (!nb)
            return -ENOMEM;
        o->bulk = nb;
        w->bulk_cap = cap;
    }
    struct json_bulk *jb = &o->bulk[o->n_bulk++];
    memset(jb, 0, sizeof(*jb));
    snprintf(jb->path, sizeof(jb->path), "%s", path);
    jb->tag = e->tag;
    jb->vr = e->vr;
    jb->flags = e->flags;
    jb->offset = e->offset;
    jb->len = e->len;
    int r = buf_puts(&o->text, ",\"BulkDataURI\":\"");
    if (r < 0)
        return r;
    o->marks[o->n_marks++] = o->text.len;
    return buf_printf(&o->text, "/studies/%s/series/%s/instances/%s/bulkdata/%s\"", w->u->study_uid,
                      w->u->series_uid, w->u->sop_uid, path);
}

static int write_ds(struct writer *w, const struct dcm_ds *ds, const struct charset *parent_cs,
                    const char *path, unsigned depth);

static int write_elem(struct writer *w, const struct dcm_elem *e, const struct charset *cs,
                      const char *path, unsigned depth)
{
    struct buf *b = &w->o->text;
    char vn[3];
    vr_name(e->vr, vn);
    /* "GGGGEEEE":{"vr":"XX"  (every element: formatted by hand) */
    static const char hex[] = "0123456789ABCDEF";
    char head[24] = "\"00000000\":{\"vr\":\"";
    for (int i = 0; i < 8; i++)
        head[1 + i] = hex[(e->tag >> (28 - 4 * i)) & 15];
    int r = buf_append(b, head, 18);
    if (r == 0)
        r = buf_append(b, vn, strlen(vn));
    if (r == 0)
        r = buf_putc(b, '"');
    if (r < 0)
        return r;
    char sub[96];
    if (e->vr == VR_SQ) {
        if (e->n_items) {
            r = buf_puts(b, ",\"Value\":[");
            for (uint32_t i = 0; i < e->n_items && r == 0; i++) {
                if (i)
                    r = buf_putc(b, ',');
                int pl = snprintf(sub, sizeof(sub), "%s%s%04X%04X/%u", path, path[0] ? "/" : "",
                                  TAG_GROUP(e->tag), TAG_ELEM(e->tag), i);
                if (pl < 0 || (size_t)pl >= sizeof(sub))
                    return -E2BIG;
                if (r == 0)
                    r = write_ds(w, &e->items[i], cs, sub, depth + 1);
            }
            if (r == 0)
                r = buf_putc(b, ']');
        }
    } else if (e->flags & DCM_E_BULK) {
        int pl = snprintf(sub, sizeof(sub), "%s%s%04X%04X", path, path[0] ? "/" : "",
                          TAG_GROUP(e->tag), TAG_ELEM(e->tag));
        if (pl < 0 || (size_t)pl >= sizeof(sub))
            return -E2BIG;
        r = add_bulk(w, e, sub);
    } else if (vr_is_bulk_binary(e->vr)) {
        if (e->len && e->value) {
            r = buf_puts(b, ",\"InlineBinary\":\"");
            if (r == 0)
                r = json_put_base64(b, e->value, e->len);
            if (r == 0)
                r = buf_putc(b, '"');
        }
    } else if (vr_numeric_size(e->vr)) {
        r = put_numeric_values(w, e);
    } else if (e->len && e->value) {
        r = put_text_values(w, cs, e);
    }
    if (r == 0)
        r = buf_putc(b, '}');
    return r;
}

static int write_ds(struct writer *w, const struct dcm_ds *ds, const struct charset *parent_cs,
                    const char *path, unsigned depth)
{
    struct charset cs = *parent_cs;
    const struct dcm_elem *sc = dcm_find(ds, TAG_SPECIFIC_CHARACTER_SET);
    if (sc && sc->value)
        charset_parse((const char *)sc->value, sc->len, &cs, NULL);
    struct buf *b = &w->o->text;
    int r = buf_putc(b, '{');
    bool first = true;
    for (uint32_t i = 0; i < ds->n && r == 0; i++) {
        const struct dcm_elem *e = &ds->elems[i];
        if (TAG_GROUP(e->tag) == 0x0002 || TAG_ELEM(e->tag) == 0x0000)
            continue;
        if (depth == 0 && w->filter && !w->filter(e->tag))
            continue;
        if (!first)
            r = buf_putc(b, ',');
        first = false;
        if (r == 0)
            r = write_elem(w, e, &cs, path, depth);
    }
    if (r == 0)
        r = buf_putc(b, '}');
    return r;
}

int json_write_dataset(const struct dcm_file *f, const struct json_uris *u, json_filter_fn filter,
                       struct json_out *o)
{
    struct writer w;
    memset(&w, 0, sizeof(w));
    w.f = f;
    w.filter = filter;
    w.u = u;
    w.o = o;
    w.bulk_cap = o->n_bulk;
    buf_init(&w.tmp, (size_t)64 << 20);
    struct charset cs;
    charset_default(&cs);
    int r = write_ds(&w, &f->ds, &cs, "", 0);
    buf_release(&w.tmp);
    return r;
}
