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
    unsigned rows;
    bool done;               /* every row produced */
    bool flushed;            /* ... and compressed into out */
    bool failed;
    const char *boundary;
};

/* ---- row output ---- */

static void set_el(json_t *o, uint32_t tag, const char *vr, json_t *values)
{
    char key[9];
    snprintf(key, sizeof(key), "%08X", tag);
    json_t *el = json_object();
    json_object_set_new(el, "vr", json_string(vr));
    if (values && json_array_size(values))
        json_object_set_new(el, "Value", values);
    else
        json_decref(values);
    json_object_set_new(o, key, el);
}

static json_t *split_values(const char *s)
{
    json_t *a = json_array();
    if (!s || !*s)
        return a;
    const char *p = s;
    while (1) {
        const char *e = strchr(p, '\\');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l)
            json_array_append_new(a, json_stringn(p, l));
        else
            json_array_append_new(a, json_null());
        if (!e)
            break;
        p = e + 1;
    }
    return a;
}

static void put_text(json_t *o, uint32_t tag, const char *vr, const char *s)
{
    set_el(o, tag, vr, split_values(s));
}

static void put_pn(json_t *o, uint32_t tag, const char *s)
{
    json_t *a = json_array();
    if (s && *s) {
        const char *p = s;
        while (1) {
            const char *e = strchr(p, '\\');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            json_t *v = json_object();
            static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
            const char *g = p;
            for (int i = 0; i < 3 && g <= p + l; i++) {
                const char *ge = memchr(g, '=', (size_t)(p + l - g));
                size_t gl = ge ? (size_t)(ge - g) : (size_t)(p + l - g);
                if (gl)
                    json_object_set_new(v, groups[i], json_stringn(g, gl));
                if (!ge)
                    break;
                g = ge + 1;
            }
            json_array_append_new(a, json_object_size(v) ? v : (json_decref(v), json_null()));
            if (!e)
                break;
            p = e + 1;
        }
    }
    set_el(o, tag, "PN", a);
}

static void put_int(json_t *o, uint32_t tag, const char *vr, long long v, bool have)
{
    json_t *a = json_array();
    if (have)
        json_array_append_new(a, json_integer(v));
    set_el(o, tag, vr, a);
}

static void put_url(json_t *o, uint32_t tag, const char *url)
{
    json_t *a = json_array();
    json_array_append_new(a, json_string(url));
    set_el(o, tag, "UR", a);
}

static bool wanted(const struct qido *q, uint32_t tag)
{
    return qido_wants(&q->p, tag);
}

/* A response was sent: returns 1 (or the send error). */
static int sent(int rc)
{
    return rc < 0 ? rc : 1;
}

static void study_defaults(struct qido *q, json_t *o, const struct index_row *row)
{
    if (row->charset)
        put_text(o, 0x00080005, "CS", row->charset);
    put_text(o, 0x00080020, "DA", row->study_date);
    put_text(o, 0x00080030, "TM", row->study_time);
    put_text(o, 0x00080050, "SH", row->accession);
    put_text(o, 0x00080056, "CS", "ONLINE");
    /* ModalitiesInStudy without a value breaks OHIF's study list
     * (ohif/Viewers#2774: it reads .Value.length); PS3.18 lets us omit an
     * unknown value, so it is left out when no series has a Modality */
    if (row->modalities && *row->modalities)
        put_text(o, 0x00080061, "CS", row->modalities);
    put_pn(o, 0x00080090, row->referring);
    if (row->timezone)
        put_text(o, 0x00080201, "SH", row->timezone);
    put_text(o, 0x00081030, "LO", row->study_description);
    put_url(o, 0x00081190, arena_printf(q->r->a, "%s/studies/%s", q->base, row->study_uid));
    put_pn(o, 0x00100010, row->patient_name);
    put_text(o, 0x00100020, "LO", row->patient_id);
    put_text(o, 0x00100030, "DA", row->patient_birth_date);
    put_text(o, 0x00100040, "CS", row->patient_sex);
    put_text(o, 0x0020000D, "UI", row->study_uid);
    put_text(o, 0x00200010, "SH", row->study_id);
    put_int(o, 0x00201206, "IS", row->n_study_series, true);
    put_int(o, 0x00201208, "IS", row->n_study_instances, true);
}

static void series_defaults(struct qido *q, json_t *o, const struct index_row *row)
{
    put_text(o, 0x00080060, "CS", row->modality);
    put_text(o, 0x0008103E, "LO", row->series_description);
    put_url(o, 0x00081190, arena_printf(q->r->a, "%s/studies/%s/series/%s", q->base,
                                        row->study_uid, row->series_uid));
    put_text(o, 0x0020000D, "UI", row->study_uid);
    put_text(o, 0x0020000E, "UI", row->series_uid);
    put_int(o, 0x00200011, "IS", row->series_number, row->has_series_number);
    put_int(o, 0x00201209, "IS", row->n_series_instances, true);
    put_text(o, 0x00400244, "DA", row->pps_start_date);
    put_text(o, 0x00400245, "TM", row->pps_start_time);
}

static void instance_defaults(struct qido *q, json_t *o, const struct index_row *row)
{
    put_text(o, 0x00080016, "UI", row->sop_class_uid);
    put_text(o, 0x00080018, "UI", row->sop_uid);
    put_text(o, 0x00080056, "CS", "ONLINE");
    put_url(o, 0x00081190, arena_printf(q->r->a, "%s/studies/%s/series/%s/instances/%s", q->base,
                                        row->study_uid, row->series_uid, row->sop_uid));
    put_text(o, 0x0020000D, "UI", row->study_uid);
    put_text(o, 0x0020000E, "UI", row->series_uid);
    put_int(o, 0x00200013, "IS", row->instance_number, row->has_instance_number);
    put_int(o, 0x00280010, "US", row->rows, row->rows > 0);
    put_int(o, 0x00280011, "US", row->cols, row->cols > 0);
    put_int(o, 0x00280100, "US", row->bits_alloc, row->bits_alloc > 0);
    put_int(o, 0x00280008, "IS", row->n_frames, row->n_frames > 0);
    /* AvailableTransferSyntaxUID: the syntax "transfer-syntax=*" delivers,
     * returned by default (as dcm4chee does) so a client can choose */
    if (row->ts_uid && row->ts_uid[0])
        put_text(o, 0x00083002, "UI", transcode_as_stored(row->ts_uid));
}

/* Copies the requested (or all) attributes of a stored level JSON. The
 * text is walked (json_scan.h) and only the values copied are parsed. */
static void merge_level(struct qido *q, json_t *o, const void *blob, size_t len, bool all)
{
    if (!blob || !len || (!all && q->p.n_ret == 0))
        return;
    size_t pos = 0;
    struct json_member m;
    while (json_scan_next(blob, len, &pos, &m) == 1) {
        char key[9];
        if (m.key_len != 8)
            continue;
        memcpy(key, m.key, 8);
        key[8] = 0;
        char *end;
        uint32_t tag = (uint32_t)strtoul(key, &end, 16);
        if (*end || !(all || wanted(q, tag)) || json_object_get(o, key))
            continue;
        json_t *v = json_loadb(m.val, m.val_len, JSON_DECODE_ANY, NULL);
        if (v)
            json_object_set_new(o, key, v);
    }
}

static void merge_meta(struct qido *q, json_t *o, const struct index_row *row)
{
    if (!row->meta)
        return;
    struct buf b;
    buf_init(&b, (size_t)256 << 20);
    char *base = arena_printf(q->r->a, "%s", q->base);
    if (metablob_inflate(row->meta, row->meta_len, base, &b) == 0 && b.data)
        merge_level(q, o, b.data, b.len, q->all);
    buf_release(&b);
}

static json_t *row_json(struct qido *q, const struct index_row *row)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    switch (q->level) {
    case INDEX_STUDY:
        study_defaults(q, o, row);
        merge_level(q, o, row->study_json, row->study_json_len, q->all);
        break;
    case INDEX_SERIES:
        series_defaults(q, o, row);
        if (!q->in_study)
            study_defaults(q, o, row);
        merge_level(q, o, row->series_json, row->series_json_len, q->all);
        merge_level(q, o, row->study_json, row->study_json_len, q->all && !q->in_study);
        break;
    case INDEX_INSTANCE:
        instance_defaults(q, o, row);
        if (!q->in_series)
            series_defaults(q, o, row);
        if (!q->in_study)
            study_defaults(q, o, row);
        if (q->all || q->p.n_ret) {
            merge_level(q, o, row->series_json, row->series_json_len, false);
            merge_level(q, o, row->study_json, row->study_json_len, false);
            /* JSON output merges the instance's own attributes as text */
            if (q->xml)
                merge_meta(q, o, row);
        }
        /* the instance's own RetrieveURL wins over the series' */
        put_url(o, 0x00081190,
                arena_printf(q->r->a, "%s/studies/%s/series/%s/instances/%s", q->base,
                             row->study_uid, row->series_uid, row->sop_uid));
        break;
    }
    return o;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* JSON text of a value built by this file (objects in insertion order;
 * jansson's own dump was a third of a search's CPU). */
static int dump_value(struct buf *b, json_t *v, unsigned depth)
{
    char tmp[40];
    if (depth > 64)
        return -ELOOP;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *x;
        bool first = true;
        int r = buf_putc(b, '{');
        json_object_foreach(v, key, x)
        {
            if (r == 0 && !first)
                r = buf_putc(b, ',');
            first = false;
            if (r == 0)
                r = json_put_string(b, key, strlen(key));
            if (r == 0)
                r = buf_putc(b, ':');
            if (r == 0)
                r = dump_value(b, x, depth + 1);
        }
        return r ? r : buf_putc(b, '}');
    }
    case JSON_ARRAY: {
        int r = buf_putc(b, '[');
        for (size_t i = 0; r == 0 && i < json_array_size(v); i++) {
            if (i)
                r = buf_putc(b, ',');
            if (r == 0)
                r = dump_value(b, json_array_get(v, i), depth + 1);
        }
        return r ? r : buf_putc(b, ']');
    }
    case JSON_STRING:
        return json_put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf_puts(b, tmp);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d))
            return buf_puts(b, "null");
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        return buf_puts(b, tmp);
    }
    case JSON_TRUE:
        return buf_puts(b, "true");
    case JSON_FALSE:
        return buf_puts(b, "false");
    default:
        return buf_puts(b, "null");
    }
}

/* A row object, its attributes in tag order. */
static int dump_row(struct buf *b, json_t *o)
{
    size_t n = json_object_size(o), k = 0;
    const char *stack_keys[64];
    const char **keys = n <= 64 ? stack_keys : malloc(n * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_str);
    int r = buf_putc(b, '{');
    for (size_t i = 0; r == 0 && i < k; i++) {
        if (i)
            r = buf_putc(b, ',');
        if (r == 0)
            r = json_put_string(b, keys[i], strlen(keys[i]));
        if (r == 0)
            r = buf_putc(b, ':');
        if (r == 0)
            r = dump_value(b, json_object_get(o, keys[i]), 0);
    }
    if (keys != stack_keys)
        free(keys);
    return r ? r : buf_putc(b, '}');
}

static int put_member(struct buf *dst, bool *first, const char *key, size_t key_len,
                      const char *val, size_t val_len)
{
    int r = buf_printf(dst, "%s\"%.*s\":", *first ? "" : ",", (int)key_len, key);
    *first = false;
    return r ? r : buf_append(dst, val, val_len);
}

static int put_json_member(struct buf *dst, bool *first, const char *key, json_t *v)
{
    int r = buf_printf(dst, "%s\"%s\":", *first ? "" : ",", key);
    *first = false;
    return r ? r : dump_value(dst, v, 0);
}

/* Writes row object o merged, in tag order, with the members of the
 * instance's stored JSON the search returns. The stored JSON is walked as
 * text: parsing it into a tree per row cost more than the rest of the
 * search. */
static int write_with_meta(struct qido *q, json_t *o, const struct index_row *row, struct buf *dst)
{
    buf_reset(&q->meta);
    int r = metablob_inflate(row->meta, row->meta_len, q->base, &q->meta);
    if (r < 0) {
        log_warn("req %llu: stored JSON of %s unreadable (%d); searched attributes only",
                 (unsigned long long)q->r->id, row->sop_uid, r);
        buf_reset(&q->meta);
    }
    size_t n = json_object_size(o), k = 0;
    const char **keys = malloc((n + 1) * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_str);
    bool first = true;
    size_t ki = 0, pos = 0;
    r = buf_putc(dst, '{');
    struct json_member m;
    while (r == 0 && q->meta.len && json_scan_next(q->meta.data, q->meta.len, &pos, &m) == 1) {
        char tagkey[9];
        if (m.key_len != 8)
            continue;
        memcpy(tagkey, m.key, 8);
        tagkey[8] = 0;
        char *end;
        uint32_t tag = (uint32_t)strtoul(tagkey, &end, 16);
        if (*end || !(q->all || wanted(q, tag)) || json_object_get(o, tagkey))
            continue;
        for (; r == 0 && ki < k && strcmp(keys[ki], tagkey) < 0; ki++)
            r = put_json_member(dst, &first, keys[ki], json_object_get(o, keys[ki]));
        if (r == 0)
            r = put_member(dst, &first, m.key, m.key_len, m.val, m.val_len);
    }
    for (; r == 0 && ki < k; ki++)
        r = put_json_member(dst, &first, keys[ki], json_object_get(o, keys[ki]));
    free(keys);
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
    json_t *o = row_json(q, &row);
    if (!o)
        return -ENOMEM;
    int r = 0;
    if (q->xml) {
        r = buf_printf(dst, "%s--%s\r\nContent-Type: application/dicom+xml\r\n\r\n",
                       q->rows ? "\r\n" : "", q->boundary);
        if (r == 0)
            r = xml_from_json(o, dst);
    } else {
        r = buf_putc(dst, q->rows ? ',' : '[');
        if (r == 0 && q->level == INDEX_INSTANCE && (q->all || q->p.n_ret) && row.meta) {
            r = write_with_meta(q, o, &row, dst);
        } else if (r == 0) {
            r = dump_row(dst, o);
        }
    }
    json_decref(o);
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
    while (q->out.len - q->out_pos < max && !q->flushed) {
        if (q->out_pos > 0 && q->out_pos == q->out.len) {
            buf_reset(&q->out);
            q->out_pos = 0;
        }
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
