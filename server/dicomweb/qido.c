/*
 * qido.c - QIDO-RS (PS3.18 10.6): search studies, series and instances.
 *
 * The query string becomes a typed index_query (matching per PS3.4
 * C.2.2.2: single value, UID list, wildcards, ranges, fuzzy person names);
 * unknown attributes and malformed values are 400 naming the parameter.
 * Rows are streamed from the index cursor one JSON object (or one XML part)
 * at a time; the array is never built whole.
 */
#include "core/common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/dict.h"
#include "dicom/json.h"
#include "dicom/metablob.h"
#include "dicom/pn.h"
#include "dicom/vr.h"
#include "dicom/json_scan.h"
#include "dicom/xml.h"
#include "dicomweb/handlers.h"
#include "dicomweb/qido_parse.h"
#include "dicomweb/transcode.h"
#include "http/gzip_out.h"
#include "http/mime.h"
#include "index/index.h"
#include "core/banned.h"

struct row_member {
    uint32_t tag;
    size_t off, len; /* value text in qido.rt */
};

struct qido {
    struct req *r;
    struct qido_params p;    /* the parsed search */
    enum index_level level;
    bool in_study;           /* study UID given in the path */
    bool in_series;
    bool all;                /* includefield=all */
    bool xml;
    const char *base;        /* "http://host/dicomweb" */
    /* streaming */
    struct index_cursor *cur;
    struct buf out;          /* bytes ready for the client */
    size_t out_pos;
    bool gzip;               /* Content-Encoding: gzip */
    struct gzip_out gz;
    struct buf text;         /* rows not yet compressed (gzip only) */
    struct buf meta;         /* this row's stored instance JSON */
    /* the row being built (see build_row) */
    struct buf rt;           /* value texts */
    struct row_member *mem;
    unsigned n_mem, cap_mem;
    int err;
    unsigned rows;
    bool done;               /* every row produced */
    bool flushed;            /* ... and compressed into out */
    bool failed;
    const char *boundary;
};

/* ---- row output ----
 *
 * A row is built as text: a list of members (tag, value text in q->rt),
 * written sorted by tag. Defaults come from index columns; attributes of
 * the stored level JSON are copied as text (json_scan.h), never parsed.
 * Building jansson trees per row was most of a search's CPU. */

static bool wanted(const struct qido *q, uint32_t tag)
{
    return qido_wants(&q->p, tag);
}

/* A response was sent: returns 1 (or the send error). */
static int sent(int rc)
{
    return rc < 0 ? rc : 1;
}

static int mem_find(const struct qido *q, uint32_t tag)
{
    for (unsigned i = 0; i < q->n_mem; i++)
        if (q->mem[i].tag == tag)
            return (int)i;
    return -1;
}

/* Records the value text rt[off..) for tag: replacing an earlier value
 * (defaults: the later, more specific level wins) or only when absent
 * (stored attributes never override the defaults). */
static void mem_set(struct qido *q, uint32_t tag, size_t off, bool replace)
{
    if (q->err)
        return;
    int i = mem_find(q, tag);
    if (i >= 0 && !replace) {
        q->rt.len = off; /* drop the text just written */
        return;
    }
    if (i < 0) {
        if (q->n_mem == q->cap_mem) {
            unsigned cap = q->cap_mem ? q->cap_mem * 2 : 64;
            struct row_member *m = cap <= 65536 ? realloc(q->mem, cap * sizeof(*m)) : NULL;
            if (!m) {
                q->err = -ENOMEM;
                return;
            }
            q->mem = m;
            q->cap_mem = cap;
        }
        i = (int)q->n_mem++;
    }
    q->mem[i].tag = tag;
    q->mem[i].off = off;
    q->mem[i].len = q->rt.len - off;
}

static void chk(struct qido *q, int r)
{
    if (r < 0 && !q->err)
        q->err = r;
}

/* {"vr":"XX","Value":[...]} with the backslash-separated values of s
 * (an empty value is null); no Value when s is empty. */
static void put_text(struct qido *q, uint32_t tag, const char *vr, const char *s)
{
    size_t off = q->rt.len;
    chk(q, buf_puts(&q->rt, "{\"vr\":\""));
    chk(q, buf_puts(&q->rt, vr));
    chk(q, buf_putc(&q->rt, '"'));
    if (s && *s) {
        chk(q, buf_puts(&q->rt, ",\"Value\":["));
        const char *p = s;
        for (bool first = true;; first = false) {
            const char *e = strchr(p, '\\');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (!first)
                chk(q, buf_putc(&q->rt, ','));
            chk(q, l ? json_put_string(&q->rt, p, l) : buf_puts(&q->rt, "null"));
            if (!e)
                break;
            p = e + 1;
        }
        chk(q, buf_putc(&q->rt, ']'));
    }
    chk(q, buf_putc(&q->rt, '}'));
    mem_set(q, tag, off, true);
}

static void put_pn(struct qido *q, uint32_t tag, const char *s)
{
    static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
    size_t off = q->rt.len;
    chk(q, buf_puts(&q->rt, "{\"vr\":\"PN\""));
    if (s && *s) {
        chk(q, buf_puts(&q->rt, ",\"Value\":["));
        const char *p = s;
        for (bool first = true;; first = false) {
            const char *e = strchr(p, '\\');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (!first)
                chk(q, buf_putc(&q->rt, ','));
            size_t vstart = q->rt.len;
            unsigned n = 0;
            const char *g = p;
            for (int i = 0; i < 3 && g <= p + l; i++) {
                const char *ge = memchr(g, '=', (size_t)(p + l - g));
                size_t gl = ge ? (size_t)(ge - g) : (size_t)(p + l - g);
                if (gl) {
                    chk(q, buf_printf(&q->rt, "%s\"%s\":", n ? "," : "{", groups[i]));
                    chk(q, json_put_string(&q->rt, g, gl));
                    n++;
                }
                if (!ge)
                    break;
                g = ge + 1;
            }
            if (n)
                chk(q, buf_putc(&q->rt, '}'));
            else {
                q->rt.len = vstart;
                chk(q, buf_puts(&q->rt, "null"));
            }
            if (!e)
                break;
            p = e + 1;
        }
        chk(q, buf_putc(&q->rt, ']'));
    }
    chk(q, buf_putc(&q->rt, '}'));
    mem_set(q, tag, off, true);
}

static void put_int(struct qido *q, uint32_t tag, const char *vr, long long v, bool have)
{
    size_t off = q->rt.len;
    if (have)
        chk(q, buf_printf(&q->rt, "{\"vr\":\"%s\",\"Value\":[%lld]}", vr, v));
    else
        chk(q, buf_printf(&q->rt, "{\"vr\":\"%s\"}", vr));
    mem_set(q, tag, off, true);
}

static void put_url(struct qido *q, uint32_t tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_url(struct qido *q, uint32_t tag, const char *fmt, ...)
{
    char url[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(url, sizeof(url), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        chk(q, -E2BIG);
        return;
    }
    size_t off = q->rt.len;
    chk(q, buf_puts(&q->rt, "{\"vr\":\"UR\",\"Value\":["));
    chk(q, json_put_string(&q->rt, url, (size_t)n));
    chk(q, buf_puts(&q->rt, "]}"));
    mem_set(q, tag, off, true);
}

static void study_defaults(struct qido *q, const struct index_row *row)
{
    if (row->charset)
        put_text(q, 0x00080005, "CS", row->charset);
    put_text(q, 0x00080020, "DA", row->study_date);
    put_text(q, 0x00080030, "TM", row->study_time);
    put_text(q, 0x00080050, "SH", row->accession);
    put_text(q, 0x00080056, "CS", "ONLINE");
    /* ModalitiesInStudy without a value breaks OHIF's study list
     * (ohif/Viewers#2774: it reads .Value.length); PS3.18 lets us omit an
     * unknown value, so it is left out when no series has a Modality */
    if (row->modalities && *row->modalities)
        put_text(q, 0x00080061, "CS", row->modalities);
    put_pn(q, 0x00080090, row->referring);
    if (row->timezone)
        put_text(q, 0x00080201, "SH", row->timezone);
    put_text(q, 0x00081030, "LO", row->study_description);
    put_url(q, 0x00081190, "%s/studies/%s", q->base, row->study_uid);
    put_pn(q, 0x00100010, row->patient_name);
    put_text(q, 0x00100020, "LO", row->patient_id);
    put_text(q, 0x00100030, "DA", row->patient_birth_date);
    put_text(q, 0x00100040, "CS", row->patient_sex);
    put_text(q, 0x0020000D, "UI", row->study_uid);
    put_text(q, 0x00200010, "SH", row->study_id);
    put_int(q, 0x00201206, "IS", row->n_study_series, true);
    put_int(q, 0x00201208, "IS", row->n_study_instances, true);
}

static void series_defaults(struct qido *q, const struct index_row *row)
{
    put_text(q, 0x00080060, "CS", row->modality);
    put_text(q, 0x0008103E, "LO", row->series_description);
    put_url(q, 0x00081190, "%s/studies/%s/series/%s", q->base, row->study_uid, row->series_uid);
    put_text(q, 0x0020000D, "UI", row->study_uid);
    put_text(q, 0x0020000E, "UI", row->series_uid);
    put_int(q, 0x00200011, "IS", row->series_number, row->has_series_number);
    put_int(q, 0x00201209, "IS", row->n_series_instances, true);
    put_text(q, 0x00400244, "DA", row->pps_start_date);
    put_text(q, 0x00400245, "TM", row->pps_start_time);
}

static void instance_defaults(struct qido *q, const struct index_row *row)
{
    put_text(q, 0x00080016, "UI", row->sop_class_uid);
    put_text(q, 0x00080018, "UI", row->sop_uid);
    put_text(q, 0x00080056, "CS", "ONLINE");
    put_text(q, 0x0020000D, "UI", row->study_uid);
    put_text(q, 0x0020000E, "UI", row->series_uid);
    put_int(q, 0x00200013, "IS", row->instance_number, row->has_instance_number);
    put_int(q, 0x00280010, "US", row->rows, row->rows > 0);
    put_int(q, 0x00280011, "US", row->cols, row->cols > 0);
    put_int(q, 0x00280100, "US", row->bits_alloc, row->bits_alloc > 0);
    put_int(q, 0x00280008, "IS", row->n_frames, row->n_frames > 0);
    /* AvailableTransferSyntaxUID: the syntax "transfer-syntax=*" delivers,
     * returned by default (as dcm4chee does) so a client can choose */
    if (row->ts_uid && row->ts_uid[0])
        put_text(q, 0x00083002, "UI", transcode_as_stored(row->ts_uid));
}

/* Copies the requested (or all) attributes of stored JSON text that the
 * row does not have yet. */
static void merge_text(struct qido *q, const char *text, size_t len, bool all)
{
    if (!text || !len || (!all && q->p.n_ret == 0))
        return;
    size_t pos = 0;
    struct json_member m;
    while (!q->err && json_scan_next(text, len, &pos, &m) == 1) {
        char key[9];
        if (m.key_len != 8)
            continue;
        memcpy(key, m.key, 8);
        key[8] = 0;
        char *end;
        uint32_t tag = (uint32_t)strtoul(key, &end, 16);
        if (*end || !(all || wanted(q, tag)) || mem_find(q, tag) >= 0)
            continue;
        size_t off = q->rt.len;
        chk(q, buf_append(&q->rt, m.val, m.val_len));
        mem_set(q, tag, off, false);
    }
}

static int cmp_member(const void *a, const void *b)
{
    const struct row_member *x = a, *y = b;
    return x->tag < y->tag ? -1 : x->tag > y->tag;
}

/* Builds the row's members; 0 or -ENOMEM. */
static int build_row(struct qido *q, const struct index_row *row)
{
    buf_reset(&q->rt);
    q->n_mem = 0;
    q->err = 0;
    switch (q->level) {
    case INDEX_STUDY:
        study_defaults(q, row);
        merge_text(q, row->study_json, row->study_json_len, q->all);
        break;
    case INDEX_SERIES:
        series_defaults(q, row);
        if (!q->in_study)
            study_defaults(q, row);
        merge_text(q, row->series_json, row->series_json_len, q->all);
        merge_text(q, row->study_json, row->study_json_len, q->all && !q->in_study);
        break;
    case INDEX_INSTANCE:
        instance_defaults(q, row);
        if (!q->in_series)
            series_defaults(q, row);
        if (!q->in_study)
            study_defaults(q, row);
        if (q->all || q->p.n_ret) {
            merge_text(q, row->series_json, row->series_json_len, false);
            merge_text(q, row->study_json, row->study_json_len, false);
        }
        /* the instance's own RetrieveURL wins over the series' */
        put_url(q, 0x00081190, "%s/studies/%s/series/%s/instances/%s", q->base, row->study_uid,
                row->series_uid, row->sop_uid);
        if ((q->all || q->p.n_ret) && row->meta) {
            buf_reset(&q->meta);
            int r = metablob_inflate(row->meta, row->meta_len, q->base, &q->meta);
            if (r < 0)
                log_warn("req %llu: stored JSON of %s unreadable (%d); searched attributes only",
                         (unsigned long long)q->r->id, row->sop_uid, r);
            else
                merge_text(q, q->meta.data, q->meta.len, q->all);
        }
        break;
    }
    return q->err;
}

/* Writes the built row as one JSON object, attributes in tag order. */
static int write_row(struct qido *q, struct buf *dst)
{
    static const char hex[] = "0123456789ABCDEF";
    qsort(q->mem, q->n_mem, sizeof(*q->mem), cmp_member);
    int r = buf_putc(dst, '{');
    for (unsigned i = 0; r == 0 && i < q->n_mem; i++) {
        char key[13], *k = key;
        if (i)
            *k++ = ',';
        *k++ = '"';
        for (int sh = 28; sh >= 0; sh -= 4)
            *k++ = hex[(q->mem[i].tag >> sh) & 15];
        *k++ = '"';
        *k++ = ':';
        r = buf_append(dst, key, (size_t)(k - key));
        if (r == 0)
            r = buf_append(dst, q->rt.data + q->mem[i].off, q->mem[i].len);
    }
    return r ? r : buf_putc(dst, '}');
}

/* ---- streaming ---- */

static int produce(struct qido *q)
{
    struct buf *dst = q->gzip ? &q->text : &q->out;
    struct index_row row;
    int rc = index_cursor_next(q->cur, &row);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        q->done = true;
        if (q->xml)
            return buf_printf(dst, "\r\n--%s--\r\n", q->boundary);
        return buf_puts(dst, q->rows ? "]\n" : "[]\n");
    }
    int r = build_row(q, &row);
    if (r < 0)
        return r;
    if (q->xml) {
        /* rare: through a jansson tree for the XML writer */
        struct buf js;
        buf_init(&js, (size_t)256 << 20);
        r = write_row(q, &js);
        json_t *o = r == 0 ? json_loadb(js.data, js.len, 0, NULL) : NULL;
        buf_release(&js);
        if (!o)
            return r < 0 ? r : -EBADMSG;
        r = buf_printf(dst, "%s--%s\r\nContent-Type: application/dicom+xml\r\n\r\n",
                       q->rows ? "\r\n" : "", q->boundary);
        if (r == 0)
            r = xml_from_json(o, dst);
        json_decref(o);
    } else {
        r = buf_putc(dst, q->rows ? ',' : '[');
        if (r == 0)
            r = write_row(q, dst);
    }
    q->rows++;
    return r;
}

/* Below this many bytes a whole result goes uncompressed: deflating it
 * costs more time than sending it, even over a clinic's link. */
#define GZIP_MIN_BYTES 8192
#define GZIP_BATCH_BYTES 16384

static ssize_t qido_read(void *ctx, uint64_t pos, char *dst, size_t max)
{
    struct qido *q = ctx;
    (void)pos;
    if (q->out_pos > 0 && q->out.len - q->out_pos < max) {
        /* keep only what is not sent yet (about one block) */
        buf_consume(&q->out, q->out_pos);
        q->out_pos = 0;
    }
    while (q->out.len - q->out_pos < max && !q->flushed) {
        int rc = q->done ? 0 : produce(q);
        /* compress in batches of rows: deflate works best on 16+ KiB */
        if (rc == 0 && q->gzip && (q->done || q->text.len >= GZIP_BATCH_BYTES)) {
            rc = gzip_out_write(&q->gz, q->text.data, q->text.len, q->done, &q->out);
            buf_reset(&q->text);
        }
        if (rc < 0) {
            log_error("req %llu: QIDO failed while streaming rows (%d)",
                      (unsigned long long)q->r->id, rc);
            return HTTP_STREAM_ERROR;
        }
        q->flushed = q->done;
    }
    size_t avail = q->out.len - q->out_pos;
    if (avail == 0)
        return HTTP_STREAM_END;
    size_t n = avail < max ? avail : max;
    memcpy(dst, q->out.data + q->out_pos, n);
    q->out_pos += n;
    q->r->bytes_out += n;
    return (ssize_t)n;
}

static void qido_free(void *ctx)
{
    struct qido *q = ctx;
    index_cursor_close(q->cur);
    buf_release(&q->out);
    buf_release(&q->text);
    buf_release(&q->meta);
    buf_release(&q->rt);
    free(q->mem);
    gzip_out_release(&q->gz);
    qido_params_release(&q->p);
    free(q);
}

/* Accept: DICOM JSON (default) or multipart/related of DICOM XML. */
static int negotiate(struct qido *q)
{
    struct req *r = q->r;
    const char *accept = http_header(r, "Accept");
    const char *qa = query_get(&r->query, "accept");
    if (qa)
        accept = qa; /* PS3.18 8.3.3.1: the query parameter overrides */
    if (!accept)
        return 0;
    struct mime_accept ma;
    if (mime_parse_accept(r->a, accept, &ma) < 0)
        return sent(http_error(r, 400, "malformed Accept"));
    double best_json = -1, best_xml = -1;
    for (unsigned i = 0; i < ma.n; i++) {
        struct mime_type *t = &ma.ranges[i];
        if (t->q <= 0)
            continue;
        if (mime_matches(t, "application", "dicom+json") || mime_matches(t, "application", "json") ||
            (!strcmp(t->type, "*") && !strcmp(t->subtype, "*")) ||
            (!strcmp(t->type, "application") && !strcmp(t->subtype, "*"))) {
            if (t->q > best_json)
                best_json = t->q;
        }
        if (mime_matches(t, "multipart", "related")) {
            const char *ty = mime_param(t, "type");
            if (ty && !strcmp(ty, "application/dicom+xml") && t->q > best_xml)
                best_xml = t->q;
        }
        if (mime_matches(t, "application", "dicom+xml"))
            best_xml = t->q > best_xml ? t->q : best_xml;
    }
    if (best_json < 0 && best_xml < 0)
        return sent(http_error(r, 406, "QIDO-RS answers in application/dicom+json or multipart/related; "
                                  "type=\"application/dicom+xml\""));
    q->xml = best_xml > best_json;
    return 0;
}

static int search(struct req *r, enum index_level level)
{
    struct qido *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->r = r;
    q->level = level;
    buf_init(&q->out, (size_t)64 << 20);
    buf_init(&q->text, (size_t)64 << 20);
    buf_init(&q->meta, (size_t)256 << 20);
    buf_init(&q->rt, (size_t)256 << 20);
    qido_params_init(&q->p, r->a, &r->query, level, r->app->cfg.qido_default_limit,
                     r->app->cfg.qido_max_limit);
    int rc = 0;
    const char *study = r->param[P_STUDY], *series = r->param[P_SERIES];
    if (study) {
        q->in_study = true;
        q->p.q.study_uid = study;
    }
    if (series) {
        q->in_series = true;
        q->p.q.series_uid = series;
    }
    rc = negotiate(q);
    if (rc == 0) {
        rc = qido_parse(&q->p);
        if (rc == -EINVAL)
            rc = sent(http_error(r, 400, "%s", q->p.err));
    }
    if (rc != 0 || r->responded) {
        qido_free(q);
        return rc < 0 ? rc : 0;
    }
    q->all = q->p.all;
    q->base = arena_printf(r->a, "%s/dicomweb", http_base_url(r));
    char err[256] = "";
    rc = index_query_open(r->app->index, &q->p.q, &q->cur, err, sizeof(err));
    if (rc == -EINVAL) {
        qido_free(q);
        return http_error(r, 400, "%s", err);
    }
    if (rc < 0) {
        qido_free(q);
        return http_error(r, 500, "search failed: %s", err[0] ? err : "index error");
    }
    const char *ctype = "application/dicom+json";
    if (q->xml) {
        q->boundary = arena_printf(r->a, "yy-%llx-%llx", (unsigned long long)r->id,
                                   (unsigned long long)(uintptr_t)q);
        ctype = arena_printf(r->a, "multipart/related; type=\"application/dicom+xml\"; "
                                   "boundary=%s",
                             q->boundary);
    }
    if (http_accepts_gzip(r)) {
        /* rows go to q->text first; a small result is sent as it is */
        q->gzip = true;
        while (!q->done && q->text.len < GZIP_MIN_BYTES && rc == 0)
            rc = produce(q);
        if (rc < 0) {
            qido_free(q);
            return http_error(r, 500, "search failed (%d)", rc);
        }
        if (q->done && q->text.len < GZIP_MIN_BYTES) {
            struct buf t = q->out;
            q->out = q->text;
            q->text = t;
            q->gzip = false;
        } else if (gzip_out_init(&q->gz) < 0) {
            qido_free(q);
            return -ENOMEM;
        }
    }
    char *warn = q->p.warn.len ? arena_printf(r->a, "299 yingyun \"%s\"", q->p.warn.data) : NULL;
    struct http_resp *resp = http_resp_stream(HTTP_SIZE_UNKNOWN, qido_read, q, qido_free);
    if (!resp)
        return -ENOMEM;
    http_resp_header(resp, "Content-Type", ctype);
    http_resp_header(resp, "Cache-Control", "no-cache");
    http_resp_header(resp, "Vary", "Accept-Encoding");
    if (q->gzip)
        http_resp_header(resp, "Content-Encoding", "gzip");
    if (warn)
        http_resp_header(resp, "Warning", warn);
    return http_send(r, 200, resp);
}

int qido_studies(struct req *r)
{
    return search(r, INDEX_STUDY);
}

int qido_series(struct req *r)
{
    return search(r, INDEX_SERIES);
}

int qido_instances(struct req *r)
{
    return search(r, INDEX_INSTANCE);
}
