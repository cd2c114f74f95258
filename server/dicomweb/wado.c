/*
 * wado.c - WADO-RS (PS3.18 10.4): retrieve study / series / instance,
 * metadata, frames and bulk data; WADO-URI (PS3.18 9); DELETE.
 *
 * Everything that can fail (lookup, negotiation, opening files) happens
 * before the response is queued; then parts stream from the stored files
 * (pread into the response buffer, or sendfile for single-file bodies) or
 * from precomputed metadata blobs. Nothing is parsed on reads unless a
 * transcoding was asked for.
 */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/sha256.h"
#include "dicom/dcm.h"
#include "dicom/frame_read.h"
#include "dicom/layout.h"
#include "dicom/metablob.h"
#include "dicom/ts.h"
#include "dicom/xml.h"
#include "dicomweb/handlers.h"
#include "dicomweb/inst_cache.h"
#include "dicomweb/meta_disk.h"
#include "dicomweb/mp_out.h"
#include "dicomweb/rendered.h"
#include "dicomweb/transcode.h"
#include "dicomweb/wado_uri_parse.h"
#include "http/mime.h"
#include "render/cache.h"
#include "index/index.h"
#include "store/store.h"
#include "core/banned.h"

#define MAX_FRAME_LIST 2048
#define DECODE_LIMIT ((uint64_t)1 << 30)

/* ---- helpers ---- */

static bool uid_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return false;
    return true;
}

/* Validates the UIDs in the path; 400 names the bad one. */
static int check_path_uids(struct req *r)
{
    static const char *const names[] = {"study", "series", "instance"};
    for (int i = P_STUDY; i <= P_INSTANCE; i++)
        if (r->param[i] && !uid_ok(r->param[i]))
            return http_error(r, 400, "the %s UID in the URL is not a valid UID", names[i]) < 0
                       ? -EIO
                       : 1;
    return 0;
}

static struct index_scope path_scope(struct req *r)
{
    struct index_scope sc = {r->param[P_STUDY], r->param[P_SERIES], r->param[P_INSTANCE]};
    return sc;
}

/* The Accept value: the "accept" query parameter overrides the header
 * (PS3.18 8.3.3.1). */
static const char *accept_value(struct req *r)
{
    const char *qa = query_get(&r->query, "accept");
    if (qa && *qa)
        return qa;
    return http_header(r, "Accept");
}

static int parse_accept(struct req *r, struct mime_accept *ma)
{
    const char *a = accept_value(r);
    if (mime_parse_accept(r->a, a, ma) < 0) {
        http_error(r, 400, "malformed Accept");
        return 1;
    }
    return 0;
}

/* Stable order by q (descending), keeping the client's order among equals. */
static void sort_by_q(struct mime_accept *ma, unsigned *order)
{
    for (unsigned i = 0; i < ma->n; i++)
        order[i] = i;
    for (unsigned i = 1; i < ma->n; i++) {
        unsigned k = order[i], j = i;
        while (j > 0 && ma->ranges[order[j - 1]].q < ma->ranges[k].q) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = k;
    }
}

static bool is_any(const struct mime_type *t)
{
    return !strcmp(t->type, "*") && !strcmp(t->subtype, "*");
}

static void http_date(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- instance retrieval ---- */

struct inst_row {
    char *sop, *rel, *ts, *study, *series;
    uint64_t size;
    struct layout lay;   /* the parts negotiation needs (no pointers kept) */
    const char *send_ts; /* negotiated transfer syntax */
};

struct retrieve {
    struct app *app;
    struct inst_row *rows;
    size_t n, next;
    char err[256];
};

static void retrieve_free(void *p)
{
    struct retrieve *rt = p;
    for (size_t i = 0; i < rt->n; i++) {
        free(rt->rows[i].sop);
        free(rt->rows[i].rel);
        free(rt->rows[i].ts);
        free(rt->rows[i].study);
        free(rt->rows[i].series);
    }
    free(rt->rows);
    free(rt);
}

static int load_rows(struct app *app, const struct index_scope *sc, struct retrieve *rt)
{
    struct index_iter *it;
    int r = index_iter_open(app->index, sc, false, true, &it);
    if (r < 0)
        return r;
    struct arena *a = arena_new(0);
    if (!a) {
        index_iter_close(it);
        return -ENOMEM;
    }
    size_t cap = 0;
    struct index_instance row;
    while ((r = index_iter_next(it, &row)) == 1) {
        if (rt->n == cap) {
            cap = cap ? cap * 2 : 64;
            struct inst_row *nr = realloc(rt->rows, cap * sizeof(*nr));
            if (!nr) {
                r = -ENOMEM;
                break;
            }
            rt->rows = nr;
        }
        struct inst_row *ir = &rt->rows[rt->n++];
        memset(ir, 0, sizeof(*ir));
        ir->sop = strdup(row.sop_uid);
        ir->rel = strdup(row.rel_path);
        ir->ts = strdup(row.ts_uid ? row.ts_uid : UID_IMPLICIT_LE);
        ir->study = strdup(row.study_uid);
        ir->series = strdup(row.series_uid);
        ir->size = row.size;
        struct layout l;
        if (row.layout && layout_decode(row.layout, row.layout_len, a, &l) == 0) {
            ir->lay.flags = l.flags;
            ir->lay.bits_alloc = l.bits_alloc;
            ir->lay.spp = l.spp;
            ir->lay.pixel_tag = l.pixel_tag;
            ir->lay.n_frames = l.n_frames;
        }
        ir->lay.ts_uid = "";
        ir->lay.photometric = "";
        if (!ir->sop || !ir->rel || !ir->ts || !ir->study || !ir->series) {
            r = -ENOMEM;
            break;
        }
    }
    index_iter_close(it);
    arena_free(a);
    return r < 0 ? r : 0;
}

/* Chooses the transfer syntax for one instance from the Accept ranges;
 * NULL when none fits. */
static const char *choose_ts(const struct mime_accept *ma, const unsigned *order, const char *stored,
                             const struct layout *l, bool *transcode)
{
    for (unsigned k = 0; k < ma->n; k++) {
        const struct mime_type *t = &ma->ranges[order[k]];
        if (t->q <= 0)
            continue;
        bool dicom = false;
        if (mime_matches(t, "multipart", "related")) {
            const char *ty = mime_param(t, "type");
            dicom = !ty || !strcmp(ty, "application/dicom");
        } else if (mime_matches(t, "application", "dicom") || is_any(t) ||
                   (!strcmp(t->type, "application") && !strcmp(t->subtype, "*")) ||
                   (!strcmp(t->type, "multipart") && !strcmp(t->subtype, "*"))) {
            dicom = true;
        }
        if (!dicom)
            continue;
        const char *want = mime_param(t, "transfer-syntax");
        if (want && !strcmp(want, "*")) {
            const char *as = transcode_as_stored(stored);
            *transcode = strcmp(as, stored) != 0;
            if (!*transcode || transcode_possible(stored, as, l))
                return as;
            continue;
        }
        /* PS3.18 8.7.3.5.2: no transfer-syntax parameter means Explicit VR LE */
        if (!want)
            want = UID_EXPLICIT_LE;
        if (!strcmp(want, UID_IMPLICIT_LE))
            continue; /* never over the web */
        if (!strcmp(want, stored)) {
            *transcode = false;
            return want;
        }
        if (transcode_possible(stored, want, l)) {
            *transcode = true;
            return want;
        }
    }
    return NULL;
}

static int next_instance(void *ctx, struct mp_out_part *p)
{
    struct retrieve *rt = ctx;
    if (rt->next >= rt->n)
        return 0;
    struct inst_row *ir = &rt->rows[rt->next++];
    int fd;
    int r = store_open_object(rt->app->store, ir->rel, &fd);
    if (r < 0) {
        log_error("retrieve: instance file missing (%d); aborting the response", r);
        return r;
    }
    snprintf(p->headers, sizeof(p->headers),
             "Content-Type: application/dicom; transfer-syntax=%s\r\n"
             "Content-Location: /dicomweb/studies/%s/series/%s/instances/%s\r\n",
             ir->send_ts, ir->study, ir->series, ir->sop);
    if (!strcmp(ir->send_ts, ir->ts)) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
            close(fd);
            return -EIO;
        }
        p->fd = fd;
        p->off = 0;
        p->len = (uint64_t)st.st_size;
        return 1;
    }
    /* transcode this one instance in memory */
    struct arena *a = arena_new(0);
    struct index_instance ii;
    struct layout l;
    r = a ? index_get_instance(rt->app->index, ir->sop, true, a, &ii) : -ENOMEM;
    if (r == 0)
        r = layout_decode(ii.layout, ii.layout_len, a, &l);
    if (r == 0)
        r = transcode_instance(fd, &l, ir->send_ts, rt->app->cfg.jpeg_quality,
                               rt->app->cfg.max_decoded_bytes, &p->mem, rt->err,
                               sizeof(rt->err));
    arena_free(a);
    close(fd);
    if (r < 0) {
        log_error("retrieve: transcoding an instance failed (%d: %s); aborting the response", r,
                  rt->err);
        return r;
    }
    return 1;
}

static int retrieve(struct req *r)
{
    int rc = check_path_uids(r);
    if (rc)
        return rc < 0 ? rc : 0;
    struct mime_accept ma;
    if (parse_accept(r, &ma))
        return 0;
    unsigned order[MIME_MAX_RANGES];
    sort_by_q(&ma, order);
    struct retrieve *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    rt->app = r->app;
    struct index_scope sc = path_scope(r);
    rc = load_rows(r->app, &sc, rt);
    if (rc < 0) {
        retrieve_free(rt);
        return rc;
    }
    if (rt->n == 0) {
        retrieve_free(rt);
        return http_error(r, 404, "no such %s", sc.sop_uid ? "instance" : sc.series_uid ? "series" : "study");
    }
    const char *boundary = mp_out_boundary(r);
    uint64_t total = mp_out_close_len(boundary);
    bool known = true;
    for (size_t i = 0; i < rt->n; i++) {
        struct inst_row *ir = &rt->rows[i];
        bool tc = false;
        ir->send_ts = choose_ts(&ma, order, ir->ts, &ir->lay, &tc);
        if (!ir->send_ts) {
            rc = http_error(r, 406, "no acceptable transfer syntax: an instance is stored as %s "
                                    "and cannot be converted to what Accept allows",
                            ir->ts);
            retrieve_free(rt);
            return rc;
        }
        if (tc) {
            known = false;
        } else {
            char hdr[512];
            snprintf(hdr, sizeof(hdr),
                     "Content-Type: application/dicom; transfer-syntax=%s\r\n"
                     "Content-Location: /dicomweb/studies/%s/series/%s/instances/%s\r\n",
                     ir->send_ts, ir->study, ir->series, ir->sop);
            total += mp_out_part_overhead(boundary, hdr) + ir->size;
        }
    }
    struct http_resp *resp = mp_out_response(boundary, known ? total : HTTP_SIZE_UNKNOWN,
                                             next_instance, rt, retrieve_free, &r->bytes_out);
    if (!resp)
        return -ENOMEM;
    char *ct = arena_printf(r->a, "multipart/related; type=\"application/dicom\"; boundary=%s",
                            boundary);
    http_resp_header(resp, "Content-Type", ct);
    return http_send(r, 200, resp);
}

int wado_study(struct req *r)
{
    return retrieve(r);
}

/* ---- metadata ---- */

/* Series and studies with at least this many instances are kept on disk
 * (meta_disk.h), when their answer is at most META_DISK_MAX_COPY bytes. The
 * copy is not even started when the answer will clearly not fit: about
 * 12 KB of JSON per instance (3.5 KB gzip'd per instance), so a series
 * growing by the thousand does not make every request hold 8 MiB. */
#define META_DISK_MIN 8
#define META_DISK_MAX_COPY ((size_t)8 << 20)
#define META_BYTES_PER_INSTANCE(gz) ((gz) ? 3500u : 12500u)

struct meta_stream {
    struct index_iter *it;
    char *base;
    bool gzip, xml;
    const char *boundary;
    struct gz_piece base_piece, comma, open, close;
    struct gz_cat cat;
    struct buf out;
    size_t pos;
    unsigned rows;
    bool done;
    uint64_t *bytes;
    /* a copy of the body for the metadata cache, while it fits */
    struct render_cache *cache;
    char cache_key[72];
    const char *ctype;
    struct buf copy;
    bool copy_over;
    /* ... and for the disk cache (meta_disk.h) */
    struct meta_disk *disk;
    struct render_cache *cache_mem;
    char *disk_study, *disk_series, disk_etag[65];
};

static void meta_free(void *p)
{
    struct meta_stream *m = p;
    buf_release(&m->copy);
    free(m->disk_study);
    free(m->disk_series);
    index_iter_close(m->it);
    free(m->base);
    gz_piece_release(&m->base_piece);
    gz_piece_release(&m->comma);
    gz_piece_release(&m->open);
    gz_piece_release(&m->close);
    buf_release(&m->out);
    free(m);
}

static int meta_produce(struct meta_stream *m)
{
    struct index_instance row;
    int rc = index_iter_next(m->it, &row);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        m->done = true;
        if (m->xml)
            return buf_printf(&m->out, "\r\n--%s--\r\n", m->boundary);
        if (m->gzip) {
            if (m->rows == 0)
                gz_cat_piece(&m->cat, &m->open, &m->out);
            gz_cat_piece(&m->cat, &m->close, &m->out);
            return gz_cat_trailer(&m->cat, &m->out);
        }
        return buf_puts(&m->out, m->rows ? "]" : "[]");
    }
    if (!row.meta)
        return -EIO;
    if (m->xml) {
        struct buf js;
        buf_init(&js, (size_t)512 << 20);
        int r = metablob_inflate(row.meta, row.meta_len, m->base, &js);
        json_t *o = r == 0 ? json_loadb(js.data, js.len, 0, NULL) : NULL;
        buf_release(&js);
        if (!o)
            return -EBADMSG;
        r = buf_printf(&m->out, "%s--%s\r\nContent-Type: application/dicom+xml\r\n\r\n",
                       m->rows ? "\r\n" : "", m->boundary);
        if (r == 0)
            r = xml_from_json(o, &m->out);
        json_decref(o);
        m->rows++;
        return r;
    }
    int r;
    if (m->gzip) {
        r = gz_cat_piece(&m->cat, m->rows ? &m->comma : &m->open, &m->out);
        if (r == 0)
            r = gz_cat_blob(&m->cat, row.meta, row.meta_len, &m->base_piece, &m->out);
    } else {
        r = buf_putc(&m->out, m->rows ? ',' : '[');
        if (r == 0)
            r = metablob_inflate(row.meta, row.meta_len, m->base, &m->out);
    }
    m->rows++;
    return r;
}

static ssize_t meta_read(void *ctx, uint64_t pos, char *dst, size_t max)
{
    struct meta_stream *m = ctx;
    (void)pos;
    if (m->pos > 0 && m->out.len - m->pos < max) {
        /* keep only what is not sent yet: the buffer holds about one block,
         * never the whole answer (it was only reset when drained exactly) */
        buf_consume(&m->out, m->pos);
        m->pos = 0;
    }
    while (m->out.len - m->pos < max && !m->done) {
        int rc = meta_produce(m);
        if (rc < 0) {
            log_error("metadata: failed while streaming (%d); aborting the response", rc);
            return HTTP_STREAM_ERROR;
        }
    }
    size_t avail = m->out.len - m->pos;
    if (avail == 0) {
        if (m->cache && !m->copy_over) {
            render_cache_put(m->cache, m->cache_key, m->copy.data, m->copy.len, m->ctype);
            m->cache = NULL;
        }
        if (m->disk && !m->copy_over && m->copy.len) {
            size_t cl;
            void *body = buf_detach(&m->copy, &cl);
            meta_disk_put(m->disk, m->disk_study, m->disk_series, m->disk_etag, body, cl,
                          m->gzip, m->cache_mem);
            m->disk = NULL;
        }
        return HTTP_STREAM_END;
    }
    size_t n = avail < max ? avail : max;
    memcpy(dst, m->out.data + m->pos, n);
    if ((m->cache || m->disk) && !m->copy_over && buf_append(&m->copy, dst, n) < 0) {
        m->copy_over = true; /* too large to keep */
        buf_release(&m->copy);
    }
    m->pos += n;
    *m->bytes += n;
    return (ssize_t)n;
}

/* Sends a metadata answer with its validators. */
static int send_metadata(struct req *r, struct http_resp *resp, const char *ctype, bool gzip,
                         const char *etag, const char *lm)
{
    http_resp_header(resp, "Content-Type", ctype);
    if (gzip)
        http_resp_header(resp, "Content-Encoding", "gzip");
    http_resp_header(resp, "Vary", "Accept, Accept-Encoding");
    http_resp_header(resp, "ETag", etag);
    http_resp_header(resp, "Last-Modified", lm);
    http_resp_header(resp, "Cache-Control", "no-cache");
    return http_send(r, 200, resp);
}

int wado_metadata(struct req *r)
{
    int rc = check_path_uids(r);
    if (rc)
        return rc < 0 ? rc : 0;
    struct mime_accept ma;
    if (parse_accept(r, &ma))
        return 0;
    double best_json = -1, best_xml = -1;
    for (unsigned i = 0; i < ma.n; i++) {
        struct mime_type *t = &ma.ranges[i];
        if (t->q <= 0)
            continue;
        if (mime_matches(t, "application", "dicom+json") || mime_matches(t, "application", "json") ||
            is_any(t) || (!strcmp(t->type, "application") && !strcmp(t->subtype, "*")))
            best_json = t->q > best_json ? t->q : best_json;
        if (mime_matches(t, "multipart", "related")) {
            const char *ty = mime_param(t, "type");
            if (ty && !strcmp(ty, "application/dicom+xml"))
                best_xml = t->q > best_xml ? t->q : best_xml;
        }
    }
    if (best_json < 0 && best_xml < 0)
        return http_error(r, 406, "metadata is available as application/dicom+json or "
                                  "multipart/related; type=\"application/dicom+xml\"");
    bool xml = best_xml > best_json;
    struct index_scope sc = path_scope(r);
    uint64_t count;
    int64_t max_ms, sum_pk;
    rc = index_scope_stat(r->app->index, &sc, &count, &max_ms, &sum_pk);
    if (rc == -ENOENT)
        return http_error(r, 404, "no such %s",
                          sc.sop_uid ? "instance" : sc.series_uid ? "series" : "study");
    if (rc < 0)
        return rc;
    const char *base = arena_printf(r->a, "%s/dicomweb", http_base_url(r));
    bool gzip = !xml && http_accepts_gzip(r);
    /* the validator covers content (instances and their times), the base
     * URL written into BulkDataURIs, and the representation */
    char key[1024], hex[65], hex_gz[65];
    int kl = snprintf(key, sizeof(key), "%s|%s|%s|%llu|%lld|%lld|%s|%d|", sc.study_uid,
                      sc.series_uid ? sc.series_uid : "", sc.sop_uid ? sc.sop_uid : "",
                      (unsigned long long)count, (long long)max_ms, (long long)sum_pk, base, xml);
    if (kl < 0 || (size_t)kl + 2 >= sizeof(key))
        return http_error(r, 414, "the request URL is too long");
    key[kl] = '1';
    key[kl + 1] = 0;
    sha256_hex(key, strlen(key), hex_gz);
    key[kl] = gzip ? '1' : '0';
    sha256_hex(key, strlen(key), hex);
    bool use_disk = !xml && !sc.sop_uid && r->app->meta_disk && count >= META_DISK_MIN &&
                    count <= META_DISK_MAX_COPY / META_BYTES_PER_INSTANCE(gzip);
    char etag[40], lm[40];
    snprintf(etag, sizeof(etag), "\"%.24s\"", hex);
    http_date(max_ms, lm);
    const char *inm = http_header(r, "If-None-Match");
    if (inm && (strstr(inm, etag) || !strcmp(inm, "*"))) {
        struct http_resp *resp = http_resp_buffer((void *)"", 0, true);
        if (!resp)
            return -ENOMEM;
        http_resp_header(resp, "ETag", etag);
        http_resp_header(resp, "Last-Modified", lm);
        return http_send(r, 304, resp);
    }
    const char *ctype_json = "application/dicom+json";
    if (!xml && r->app->meta_cache) {
        /* sent before with the same content and representation: sent
         * from the cache's bytes */
        const void *hb;
        size_t hl;
        char type[32];
        void *tok = render_cache_borrow(r->app->meta_cache, hex, &hb, &hl, type);
        if (tok) {
            struct http_resp *resp = http_resp_lent(hb, hl, render_cache_return, tok);
            if (!resp)
                return -ENOMEM;
            r->bytes_out += hl;
            return send_metadata(r, resp, ctype_json, gzip, etag, lm);
        }
    }
    int dfd;
    uint64_t doff, dlen;
    if (use_disk && gzip &&
        meta_disk_get(r->app->meta_disk, sc.study_uid, sc.series_uid, hex, &dfd, &doff, &dlen)) {
        struct http_resp *resp = http_resp_fd(dfd, doff, dlen);
        if (!resp)
            return -ENOMEM;
        r->bytes_out += dlen;
        return send_metadata(r, resp, ctype_json, true, etag, lm);
    }
    struct meta_stream *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    size_t mem_max = render_cache_max_entry(r->app->meta_cache);
    if (!xml && mem_max && count * META_BYTES_PER_INSTANCE(gzip) <= mem_max) {
        m->cache = r->app->meta_cache;
        snprintf(m->cache_key, sizeof(m->cache_key), "%s", hex);
        m->ctype = ctype_json;
        /* larger entries are not kept anyway */
        buf_init(&m->copy, mem_max + 1);
    }
    if (use_disk) {
        m->disk = r->app->meta_disk;
        m->cache_mem = r->app->meta_cache;
        m->disk_study = strdup(sc.study_uid);
        m->disk_series = sc.series_uid ? strdup(sc.series_uid) : NULL;
        if (!m->disk_study || (sc.series_uid && !m->disk_series))
            m->disk = NULL;
        memcpy(m->disk_etag, hex_gz, sizeof(m->disk_etag));
        if (!m->cache)
            buf_init(&m->copy, META_DISK_MAX_COPY);
        else if (m->copy.max_bytes < META_DISK_MAX_COPY)
            m->copy.max_bytes = META_DISK_MAX_COPY;
    }
    m->base = strdup(base);
    m->gzip = gzip;
    m->xml = xml;
    m->bytes = &r->bytes_out;
    buf_init(&m->out, (size_t)1 << 30);
    gz_piece_init(&m->base_piece);
    gz_piece_init(&m->comma);
    gz_piece_init(&m->open);
    gz_piece_init(&m->close);
    gz_cat_init(&m->cat);
    rc = m->base ? index_iter_open(r->app->index, &sc, true, false, &m->it) : -ENOMEM;
    if (rc == 0 && gzip) {
        rc = gz_piece_make(&m->base_piece, base, strlen(base));
        rc |= gz_piece_make(&m->comma, ",", 1);
        rc |= gz_piece_make(&m->open, "[", 1);
        rc |= gz_piece_make(&m->close, "]", 1);
        rc |= gz_cat_header(&m->out);
    }
    if (rc == 0 && xml)
        m->boundary = mp_out_boundary(r);
    if (rc < 0) {
        meta_free(m);
        return rc;
    }
    struct http_resp *resp = http_resp_stream(HTTP_SIZE_UNKNOWN, meta_read, m, meta_free);
    if (!resp)
        return -ENOMEM;
    const char *ctype =
        xml ? arena_printf(r->a, "multipart/related; type=\"application/dicom+xml\"; boundary=%s",
                           m->boundary)
            : ctype_json;
    if (!ctype) {
        http_resp_free(resp);
        return -ENOMEM;
    }
    return send_metadata(r, resp, ctype, gzip, etag, lm);
}

/* ---- one instance: lookup + layout ---- */

struct one {
    struct index_instance ii;
    struct layout l;
    int fd;
};

static void close_fd(void *p)
{
    int *fd = p;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Finds the instance of the URL, checks it belongs to its study/series,
 * decodes its layout and opens its file (closed with the request). */
static int load_one(struct req *r, struct one *o)
{
    int rc = check_path_uids(r);
    if (rc)
        return rc < 0 ? rc : 1;
    o->fd = -1;
    const char *sop = r->param[P_INSTANCE];
    struct inst_cache *ic = r->app->inst_cache;
    struct inst_file_id fid;
    /* a cached row first; it counts only if the file opened is the one it
     * was made with (else another process replaced or removed it: ask the
     * index, once) */
    bool cached = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t gen = index_write_gen(r->app->index);
        cached = attempt == 0 && inst_cache_get(ic, sop, gen, r->a, &o->ii, &fid);
        rc = cached ? 0 : index_get_instance(r->app->index, sop, true, r->a, &o->ii);
        if (rc == -ENOENT || (rc == 0 && (strcmp(o->ii.study_uid, r->param[P_STUDY]) != 0 ||
                                          strcmp(o->ii.series_uid, r->param[P_SERIES]) != 0))) {
            http_error(r, 404, "no such instance");
            return 1;
        }
        if (rc < 0)
            return rc;
        rc = store_open_object(r->app->store, o->ii.rel_path, &o->fd);
        struct stat st;
        if (rc == 0 && fstat(o->fd, &st) < 0) {
            close(o->fd);
            o->fd = -1;
            rc = -EIO;
        }
        if (cached && (rc < 0 || (uint64_t)st.st_dev != fid.dev ||
                       (uint64_t)st.st_ino != fid.ino)) {
            if (rc == 0)
                close(o->fd);
            o->fd = -1;
            inst_cache_drop(ic, sop);
            continue;
        }
        if (rc < 0) {
            http_error(r, 500, "the stored file of this instance is missing");
            return 1;
        }
        if (!cached) {
            fid.dev = (uint64_t)st.st_dev;
            fid.ino = (uint64_t)st.st_ino;
            inst_cache_put(ic, gen, &o->ii, &fid);
        }
        break;
    }
    if (arena_on_release(r->a, close_fd, &o->fd) < 0) {
        close(o->fd);
        o->fd = -1;
        return -ENOMEM;
    }
    rc = layout_decode(o->ii.layout, o->ii.layout_len, r->a, &o->l);
    if (rc < 0) {
        http_error(r, 500, "the stored layout of this instance is unreadable");
        return 1;
    }
    return 0;
}

/* ---- frames ---- */

enum { FJ_STORED, FJ_NATIVE, FJ_ENCODE };

struct frame_job {
    struct app *app;
    int fd;                /* closed with the job when owned */
    bool own_fd;
    struct layout *l;
    uint32_t *frames;
    uint32_t n, next;
    int mode;              /* FJ_STORED, FJ_NATIVE, FJ_ENCODE */
    const char *part_type; /* media type of the parts */
    const char *ts;        /* FJ_ENCODE: target syntax */
    unsigned quality;
    uint64_t max_bytes;
    char err[256];
};

/* Parses "1,3,5" into 0-based indexes; 400/404 sent on errors (returns 1). */
static int parse_frames(struct req *r, const struct layout *l, uint32_t **out, uint32_t *n_out)
{
    const char *s = r->param[P_FRAMES];
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (n > MAX_FRAME_LIST) {
        http_error(r, 400, "more than %d frame numbers in one request", MAX_FRAME_LIST);
        return 1;
    }
    uint32_t *v = arena_alloc(r->a, n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    uint32_t k = 0;
    const char *p = s;
    while (1) {
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t len = (size_t)(e - p);
        bool digits = len > 0 && len <= 9;
        for (size_t i = 0; digits && i < len; i++)
            digits = p[i] >= '0' && p[i] <= '9';
        if (!digits) {
            http_error(r, 400, "frame numbers must be positive integers separated by commas");
            return 1;
        }
        unsigned long f = strtoul(p, NULL, 10);
        if (f == 0) {
            http_error(r, 400, "frame numbers start at 1");
            return 1;
        }
        if (!(l->flags & LAYOUT_PIXELS)) {
            http_error(r, 404, "this instance has no pixel data");
            return 1;
        }
        if (f > l->n_frames) {
            http_error(r, 404, "frame %lu does not exist (the instance has %u)", f, l->n_frames);
            return 1;
        }
        v[k++] = (uint32_t)(f - 1);
        if (!*e)
            break;
        p = e + 1;
    }
    if (!(l->flags & LAYOUT_FRAMES_OK)) {
        http_error(r, 500, "the frames of this instance could not be located at ingest");
        return 1;
    }
    *out = v;
    *n_out = k;
    return 0;
}

/* The part headers of every frame of a job. */
static void frame_headers(const struct frame_job *j, char *headers, size_t headers_cap)
{
    const char *ts = j->mode == FJ_ENCODE                ? j->ts
                     : j->mode == FJ_NATIVE              ? UID_EXPLICIT_LE
                     : (j->l->flags & LAYOUT_ENCAPS)     ? j->l->ts_uid
                                                         : UID_EXPLICIT_LE;
    snprintf(headers, headers_cap, "Content-Type: %s; transfer-syntax=%s\r\n", j->part_type, ts);
}

/* Appends the bytes of frame idx, as the job delivers them, to out. */
static int frame_bytes(struct frame_job *j, uint32_t idx, struct buf *out)
{
    int r;
    if (j->mode == FJ_STORED) {
        r = frame_read(j->fd, j->l, idx, out, NULL);
    } else if (j->mode == FJ_NATIVE) {
        char photometric[20];
        r = transcode_frame_native(j->fd, j->l, idx, j->max_bytes, out, photometric, j->err,
                                   sizeof(j->err));
    } else {
        r = transcode_frame_to(j->fd, j->l, idx, j->ts, j->quality, j->max_bytes, out, j->err,
                               sizeof(j->err));
    }
    if (r < 0)
        log_error("frames: frame %u failed (%d %s)", idx + 1, r, j->err);
    return r;
}

static int next_frame(void *ctx, struct mp_out_part *p)
{
    struct frame_job *j = ctx;
    if (j->next >= j->n)
        return 0;
    uint32_t idx = j->frames[j->next++];
    frame_headers(j, p->headers, sizeof(p->headers));
    int r = frame_bytes(j, idx, &p->mem);
    return r < 0 ? r : 1;
}

static void frame_job_free(void *p)
{
    struct frame_job *j = p;
    if (j->own_fd && j->fd >= 0)
        close(j->fd);
    free(j);
}

/* What the client accepts for frames. */
struct frame_choice {
    bool ok;
    bool single;           /* a bare media type was accepted: single part */
    int mode;              /* FJ_STORED, FJ_NATIVE or FJ_ENCODE */
    const char *part_type; /* media type of the parts */
    const char *ts;        /* FJ_ENCODE: the target transfer syntax */
};

/* PS3.18 table 8.7.3-5: the default transfer syntax of a frame media type */
static const char *default_ts_of(const char *media_type)
{
    static const struct {
        const char *mt, *ts;
    } map[] = {
        {"image/jpeg", "1.2.840.10008.1.2.4.50"}, {"image/jls", "1.2.840.10008.1.2.4.80"},
        {"image/jp2", "1.2.840.10008.1.2.4.90"},  {"image/jphc", "1.2.840.10008.1.2.4.201"},
        {"image/dicom-rle", "1.2.840.10008.1.2.5"}, {"image/jxl", "1.2.840.10008.1.2.4.110"},
    };
    for (size_t i = 0; i < YY_ARRAY_LEN(map); i++)
        if (!strcmp(map[i].mt, media_type))
            return map[i].ts;
    return NULL;
}

static struct frame_choice choose_frames(const struct mime_accept *ma, const unsigned *order,
                                         const struct layout *l)
{
    struct frame_choice c = {false, false, FJ_STORED, NULL, NULL};
    bool native_stored = !(l->flags & LAYOUT_ENCAPS);
    bool plain_native = native_stored && !(l->flags & (LAYOUT_BIG | LAYOUT_DEFLATED)) &&
                        l->bits_alloc != 1;
    const struct ts_info *t = ts_lookup(l->ts_uid);
    const char *stored_mt = native_stored ? "application/octet-stream"
                            : t ? t->media_type : "application/octet-stream";
    for (unsigned k = 0; k < ma->n; k++) {
        const struct mime_type *m = &ma->ranges[order[k]];
        if (m->q <= 0)
            continue;
        const char *ts = mime_param(m, "transfer-syntax");
        char type[128];
        if (mime_matches(m, "multipart", "related")) {
            const char *ty = mime_param(m, "type");
            snprintf(type, sizeof(type), "%s", ty ? ty : "application/octet-stream");
        } else if (is_any(m) || (!strcmp(m->type, "image") && !strcmp(m->subtype, "*"))) {
            /* anything: the stored bytes */
            c.ok = true;
            c.mode = plain_native || !native_stored ? FJ_STORED : FJ_NATIVE;
            c.part_type = stored_mt;
            return c;
        } else {
            snprintf(type, sizeof(type), "%s/%s", m->type, m->subtype);
            c.single = true;
        }
        if (!strcmp(type, "application/octet-stream")) {
            if (ts && !strcmp(ts, "*")) {
                /* OHIF's form: whatever is stored, labelled with its syntax */
                c.ok = true;
                c.mode = plain_native || !native_stored ? FJ_STORED : FJ_NATIVE;
                c.part_type = "application/octet-stream";
                return c;
            }
            if (!ts || !strcmp(ts, UID_EXPLICIT_LE)) {
                /* native little-endian pixels, decoded when needed */
                if (native_stored || transcode_can_decode(l->ts_uid)) {
                    c.ok = true;
                    c.mode = plain_native ? FJ_STORED : FJ_NATIVE;
                    c.part_type = "application/octet-stream";
                    return c;
                }
            }
            continue;
        }
        /* a compressed media type */
        const char *want = ts && strcmp(ts, "*") ? ts : NULL;
        if (!native_stored && !strcmp(type, stored_mt) && (!want || !strcmp(want, l->ts_uid))) {
            c.ok = true;
            c.mode = FJ_STORED;
            c.part_type = stored_mt;
            return c;
        }
        if (!want)
            want = default_ts_of(type);
        const struct ts_info *wt = want ? ts_lookup(want) : NULL;
        if (wt && !strcmp(wt->media_type, type) && transcode_frame_possible(l, want)) {
            c.ok = true;
            c.mode = FJ_ENCODE;
            c.ts = wt->uid;
            c.part_type = wt->media_type;
            return c;
        }
    }
    return c;
}

/* Applies a single HTTP Range (RFC 9110 14: bytes=a-b, a-, -n) to the
 * body [*off, *off + *len): 0 without a Range header, 1 with the range
 * applied (206, content_range set), -ERANGE when a 416 was sent. */
static int http_range(struct req *r, uint64_t *off, uint64_t *len, char *content_range,
                      size_t cr_cap)
{
    const char *range = http_header(r, "Range");
    if (!range)
        return 0;
    uint64_t n = *len;
    unsigned long long a = 0, z = n ? n - 1 : 0;
    char *end;
    bool ok = !strncmp(range, "bytes=", 6) && !strchr(range, ',');
    if (ok && range[6] == '-') {
        unsigned long long suffix = strtoull(range + 7, &end, 10);
        ok = end != range + 7 && *end == 0 && suffix > 0;
        if (ok)
            a = suffix >= n ? 0 : n - suffix;
    } else if (ok) {
        a = strtoull(range + 6, &end, 10);
        ok = end != range + 6 && *end == '-';
        if (ok && end[1]) {
            char *e2;
            z = strtoull(end + 1, &e2, 10);
            ok = *e2 == 0 && z >= a;
        }
    }
    if (!ok || a >= n) {
        struct http_resp *resp = http_resp_buffer((void *)"", 0, true);
        if (!resp)
            return -ENOMEM;
        char cr[64];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)n);
        http_resp_header(resp, "Content-Range", cr);
        int rc = http_send(r, 416, resp);
        return rc < 0 ? rc : -ERANGE;
    }
    if (z >= n)
        z = n - 1;
    snprintf(content_range, cr_cap, "bytes %llu-%llu/%llu", a, z, (unsigned long long)n);
    *off += a;
    *len = z - a + 1;
    return 1;
}

/* Sends frames[0..n) of an opened instance as negotiated from Accept. */
static int frames_respond(struct req *r, struct one *o, uint32_t *frames, uint32_t n)
{
    struct mime_accept ma;
    if (parse_accept(r, &ma))
        return 0;
    unsigned order[MIME_MAX_RANGES];
    sort_by_q(&ma, order);
    struct frame_choice c = choose_frames(&ma, order, &o->l);
    if (!c.ok)
        return http_error(r, 406, "frames of this instance (%s) are not available in the "
                                  "requested media type",
                          o->l.ts_uid);
    struct frame_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->app = r->app;
    /* a job answered within this call borrows the request's descriptor; a
     * streamed one (several frames) outlives the handler and owns a copy */
    j->own_fd = n > 1;
    j->fd = j->own_fd ? dup(o->fd) : o->fd;
    j->l = &o->l;
    j->frames = frames;
    j->n = n;
    j->mode = c.mode;
    j->part_type = c.part_type;
    j->ts = c.ts;
    j->quality = r->app->cfg.jpeg_quality;
    j->max_bytes = r->app->cfg.max_decoded_bytes;
    if (j->fd < 0) {
        free(j);
        return -EIO;
    }
    const char *boundary = mp_out_boundary(r);
    const char *type = c.part_type;
    uint64_t foff, flen;
    if (n == 1 && c.single && c.mode == FJ_STORED &&
        frame_file_range(j->l, frames[0], &foff, &flen) == 0) {
        /* one frame asked as a bare media type: a single-part answer sent
         * from the file (zero-copy) with HTTP Range, so a client can read
         * a progressive HTJ2K codestream's first resolutions only */
        char content_range[96] = "";
        int rr = http_range(r, &foff, &flen, content_range, sizeof(content_range));
        if (rr < 0) {
            frame_job_free(j);
            return rr == -ERANGE ? 0 : rr;
        }
        char headers[512];
        frame_headers(j, headers, sizeof(headers));
        frame_job_free(j);
        int fd = dup(o->fd);
        if (fd < 0)
            return -EIO;
        struct http_resp *resp = http_resp_fd(fd, foff, flen);
        if (!resp)
            return -ENOMEM;
        r->bytes_out += flen;
        /* "Content-Type: x; transfer-syntax=y\r\n" -> the header value */
        char *v = headers + strlen("Content-Type: ");
        v[strcspn(v, "\r")] = 0;
        http_resp_header(resp, "Content-Type", v);
        http_resp_header(resp, "Accept-Ranges", "bytes");
        if (rr == 1)
            http_resp_header(resp, "Content-Range", content_range);
        return http_send(r, rr == 1 ? 206 : 200, resp);
    }
    if (n == 1) {
        /* one frame (the common case): read or convert it before answering,
         * so that a frame that cannot be decoded gets a status and a reason,
         * and send it as one buffer, the frame read straight into it */
        char headers[512];
        frame_headers(j, headers, sizeof(headers));
        struct buf body;
        buf_init(&body, r->app->cfg.max_decoded_bytes + 4096);
        flen = 0;
        if (j->mode == FJ_STORED && frame_file_range(j->l, frames[0], &foff, &flen) == 0 &&
            flen < ((uint64_t)1 << 31))
            (void)buf_reserve(&body, (size_t)flen + 1024);
        int rc2 = buf_printf(&body, "--%s\r\n%s\r\n", boundary, headers);
        if (rc2 == 0)
            rc2 = frame_bytes(j, frames[0], &body);
        if (rc2 == 0)
            rc2 = buf_printf(&body, "\r\n--%s--\r\n", boundary);
        frame_job_free(j);
        if (rc2 < 0) {
            buf_release(&body);
            if (rc2 == -ENOMEM)
                return rc2;
            return http_error(r, rc2 == -E2BIG ? 413 : rc2 == -ENOTSUP ? 406 : 500,
                              "frame %u cannot be %s", frames[0] + 1,
                              c.mode == FJ_STORED ? "read" : "converted");
        }
        size_t bl;
        char *b = buf_detach(&body, &bl);
        struct http_resp *one = http_resp_buffer(b, bl, false);
        if (!one)
            return -ENOMEM;
        r->bytes_out += bl;
        http_resp_header(one, "Content-Type",
                         arena_printf(r->a, "multipart/related; type=\"%s\"; boundary=%s", type,
                                      boundary));
        return http_send(r, 200, one);
    }
    struct http_resp *resp = mp_out_response(boundary, HTTP_SIZE_UNKNOWN, next_frame, j,
                                             frame_job_free, &r->bytes_out);
    if (!resp)
        return -ENOMEM;
    http_resp_header(resp, "Content-Type",
                     arena_printf(r->a, "multipart/related; type=\"%s\"; boundary=%s", type,
                                  boundary));
    return http_send(r, 200, resp);
}

int wado_frames(struct req *r)
{
    struct one *o = arena_zalloc(r->a, sizeof(*o));
    if (!o)
        return -ENOMEM;
    int rc = load_one(r, o);
    if (rc)
        return rc < 0 ? rc : 0;
    uint32_t *frames, n;
    rc = parse_frames(r, &o->l, &frames, &n);
    if (rc)
        return rc < 0 ? rc : 0;
    return frames_respond(r, o, frames, n);
}

/* Encapsulated data inside a sequence (an icon image): rare, so its
 * fragments are found by parsing the file here; one part, the codestream. */
static int nested_encapsulated(struct req *r, struct one *o, const char *path)
{
    struct dcm_file *f = NULL;
    char err[256];
    int rc = dcm_parse_fd(o->fd, NULL, &f, err, sizeof(err));
    if (rc < 0)
        return http_error(r, 500, "the stored instance cannot be parsed: %s", err);
    const struct dcm_ds *ds = &f->ds;
    const struct dcm_elem *e = NULL;
    const char *p = path;
    while (ds && *p) {
        char *end;
        unsigned long tag = strtoul(p, &end, 16);
        e = dcm_find(ds, (uint32_t)tag);
        if (!e || end - p != 8)
            break;
        p = *end == '/' ? end + 1 : end;
        if (!*p)
            break;
        unsigned long item = strtoul(p, &end, 10);
        if (e->vr != 0x5351 /* SQ */ || item >= e->n_items || *end != '/') {
            e = NULL;
            break;
        }
        ds = &e->items[item];
        p = end + 1;
    }
    if (!e || !(e->flags & DCM_E_ENCAPS)) {
        dcm_file_free(f);
        return http_error(r, 404, "no bulk data at this path");
    }
    struct buf data;
    buf_init(&data, DECODE_LIMIT);
    for (uint32_t i = 1; i < e->n_frags && rc == 0; i++)
        rc = frame_read_range(o->fd, &o->l, e->frags[i].offset, e->frags[i].len, &data);
    dcm_file_free(f);
    if (rc < 0) {
        buf_release(&data);
        return http_error(r, 500, "cannot read the data (%d)", rc);
    }
    const char *boundary = mp_out_boundary(r);
    struct buf mp;
    buf_init(&mp, 0);
    rc = buf_printf(&mp, "--%s\r\nContent-Type: application/octet-stream\r\n\r\n", boundary);
    rc |= buf_append(&mp, data.data, data.len);
    rc |= buf_printf(&mp, "\r\n--%s--\r\n", boundary);
    buf_release(&data);
    if (rc) {
        buf_release(&mp);
        return -ENOMEM;
    }
    size_t ml;
    char *body = buf_detach(&mp, &ml);
    struct http_resp *resp = http_resp_buffer(body, ml, false);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += ml;
    http_resp_header(resp, "Content-Type",
                     arena_printf(r->a, "multipart/related; type=\"application/octet-stream\"; "
                                        "boundary=%s", boundary));
    return http_send(r, 200, resp);
}

/* ---- bulk data ---- */

int wado_bulkdata(struct req *r)
{
    struct one *o = arena_zalloc(r->a, sizeof(*o));
    if (!o)
        return -ENOMEM;
    int rc = load_one(r, o);
    if (rc)
        return rc < 0 ? rc : 0;
    const struct layout_bulk *b = layout_find_bulk(&o->l, r->param[P_BULK]);
    if (!b)
        return http_error(r, 404, "no bulk data at this path");
    struct mime_accept ma;
    if (parse_accept(r, &ma))
        return 0;
    bool single = false, multi = false;
    for (unsigned i = 0; i < ma.n; i++) {
        struct mime_type *t = &ma.ranges[i];
        if (t->q <= 0)
            continue;
        if (mime_matches(t, "application", "octet-stream") || is_any(t))
            single = true;
        if (mime_matches(t, "multipart", "related")) {
            const char *ty = mime_param(t, "type");
            if (!ty || !strcmp(ty, "application/octet-stream"))
                multi = true;
        }
    }
    char top[16];
    snprintf(top, sizeof(top), "%08X", o->l.pixel_tag);
    if ((b->flags & DCM_E_ENCAPS) && !strcmp(b->path, top)) {
        /* PS3.18 8.7.3.3.2: compressed pixel data as bulk data is one part
         * per frame, the codestream without fragment delimiters */
        if (!(o->l.flags & LAYOUT_FRAMES_OK))
            return http_error(r, 500, "the frames of this instance could not be located at ingest");
        uint32_t *frames = arena_alloc(r->a, (o->l.n_frames ? o->l.n_frames : 1) * sizeof(*frames));
        if (!frames)
            return -ENOMEM;
        for (uint32_t i = 0; i < o->l.n_frames; i++)
            frames[i] = i;
        return frames_respond(r, o, frames, o->l.n_frames);
    }
    if (!single && !multi)
        return http_error(r, 406, "bulk data is available as application/octet-stream");
    if (b->flags & DCM_E_ENCAPS)
        return nested_encapsulated(r, o, b->path);
    bool zero_copy = !(o->l.flags & (LAYOUT_DEFLATED | LAYOUT_BIG));
    uint64_t off = b->offset, len = b->len;
    /* HTTP Range (RFC 9110 14): a single range on single-part responses */
    unsigned status = 200;
    char content_range[96] = "";
    if (single) {
        int rr = http_range(r, &off, &len, content_range, sizeof(content_range));
        if (rr < 0)
            return rr == -ERANGE ? 0 : rr;
        if (rr == 1)
            status = 206;
    }
    if (single && zero_copy) {
        int fd = dup(o->fd);
        if (fd < 0)
            return -EIO;
        struct http_resp *resp = http_resp_fd(fd, off, len);
        if (!resp)
            return -ENOMEM;
        r->bytes_out += len;
        http_resp_header(resp, "Content-Type", "application/octet-stream");
        http_resp_header(resp, "Accept-Ranges", "bytes");
        if (status == 206)
            http_resp_header(resp, "Content-Range", content_range);
        return http_send(r, status, resp);
    }
    struct buf data;
    buf_init(&data, DECODE_LIMIT);
    rc = frame_read_range(o->fd, &o->l, off, len, &data);
    if (rc < 0) {
        buf_release(&data);
        return http_error(r, 500, "cannot read the bulk data (%d)", rc);
    }
    if (o->l.flags & LAYOUT_BIG) {
        unsigned unit = 1;
        switch (b->vr) {
        case 0x4F57: /* OW */
        case 0x5553: /* US */
        case 0x5353: /* SS */
            unit = 2;
            break;
        case 0x4F46: /* OF */
        case 0x4F4C: /* OL */
        case 0x554C: /* UL */
        case 0x534C: /* SL */
        case 0x464C: /* FL */
            unit = 4;
            break;
        case 0x4F44: /* OD */
        case 0x4F56: /* OV */
        case 0x4644: /* FD */
            unit = 8;
            break;
        }
        if (b->tag == 0x7FE00010 && o->l.bits_alloc >= 16)
            unit = o->l.bits_alloc / 8;
        uint8_t *v = (uint8_t *)data.data;
        for (size_t i = 0; unit > 1 && i + unit <= data.len; i += unit)
            for (unsigned x = 0, y = unit - 1; x < y; x++, y--) {
                uint8_t tmp = v[i + x];
                v[i + x] = v[i + y];
                v[i + y] = tmp;
            }
    }
    if (single) {
        size_t dl;
        char *body = buf_detach(&data, &dl);
        struct http_resp *resp = http_resp_buffer(body, dl, false);
        if (!resp)
            return -ENOMEM;
        r->bytes_out += dl;
        http_resp_header(resp, "Content-Type", "application/octet-stream");
        if (status == 206)
            http_resp_header(resp, "Content-Range", content_range);
        return http_send(r, status, resp);
    }
    const char *boundary = mp_out_boundary(r);
    struct buf mp;
    buf_init(&mp, 0);
    rc = buf_printf(&mp, "--%s\r\nContent-Type: application/octet-stream\r\n\r\n", boundary);
    rc |= buf_append(&mp, data.data, data.len);
    rc |= buf_printf(&mp, "\r\n--%s--\r\n", boundary);
    buf_release(&data);
    if (rc) {
        buf_release(&mp);
        return -ENOMEM;
    }
    size_t ml;
    char *body = buf_detach(&mp, &ml);
    struct http_resp *resp = http_resp_buffer(body, ml, false);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += ml;
    http_resp_header(resp, "Content-Type",
                     arena_printf(r->a,
                                  "multipart/related; type=\"application/octet-stream\"; "
                                  "boundary=%s",
                                  boundary));
    return http_send(r, 200, resp);
}

/* ---- WADO-URI (PS3.18 9) ---- */

int wado_uri(struct req *r)
{
    struct wado_uri w;
    char perr[256];
    if (wado_uri_parse(r->a, &r->query, &w, perr, sizeof(perr)) < 0)
        return http_error(r, 400, "%s", perr);
    const char *study = w.study, *series = w.series, *object = w.object;
    if (!w.want_dicom) {
        if (!w.want_jpeg && !w.want_png && !w.want_gif)
            return http_error(r, 406, "contentType must be application/dicom, image/jpeg, "
                                      "image/png or image/gif");
        struct index_instance chk;
        int cr = index_get_instance(r->app->index, w.object, false, r->a, &chk);
        if (cr == -ENOENT ||
            (cr == 0 && (strcmp(chk.study_uid, w.study) || strcmp(chk.series_uid, w.series))))
            return http_error(r, 404, "no such object");
        if (cr < 0)
            return cr;
        return rendered_wado_uri(r, w.object, w.frame, w.rows, w.columns, w.has_window,
                                 w.window_center, w.window_width, w.quality,
                                 !w.want_jpeg && w.want_png, !w.want_jpeg && !w.want_png);
    }
    struct index_instance ii;
    int rc = index_get_instance(r->app->index, object, true, r->a, &ii);
    if (rc == -ENOENT || (rc == 0 && (strcmp(ii.study_uid, study) || strcmp(ii.series_uid, series))))
        return http_error(r, 404, "no such object");
    if (rc < 0)
        return rc;
    struct layout l;
    if (layout_decode(ii.layout, ii.layout_len, r->a, &l) < 0)
        return http_error(r, 500, "the stored layout of this object is unreadable");
    const char *want = w.transfer_syntax;
    const char *stored = ii.ts_uid ? ii.ts_uid : UID_IMPLICIT_LE;
    const char *send = want && *want ? want : UID_EXPLICIT_LE;
    if (!strcmp(send, UID_IMPLICIT_LE))
        return http_error(r, 406, "Implicit VR Little Endian is not sent over the web");
    if (strcmp(send, stored) && !transcode_possible(stored, send, &l))
        return http_error(r, 406, "the object (%s) cannot be converted to %s", stored, send);
    int fd;
    rc = store_open_object(r->app->store, ii.rel_path, &fd);
    if (rc < 0)
        return http_error(r, 500, "the stored file of this object is missing");
    struct http_resp *resp;
    if (!strcmp(send, stored)) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
            close(fd);
            return -EIO;
        }
        resp = http_resp_fd(fd, 0, (uint64_t)st.st_size);
        r->bytes_out += (uint64_t)st.st_size;
    } else {
        struct buf out;
        buf_init(&out, (size_t)4 << 30);
        char err[256];
        rc = transcode_instance(fd, &l, send, r->app->cfg.jpeg_quality, r->app->cfg.max_decoded_bytes,
                                &out, err, sizeof(err));
        close(fd);
        if (rc < 0) {
            buf_release(&out);
            return http_error(r, 500, "conversion failed: %s", err);
        }
        size_t len;
        char *body = buf_detach(&out, &len);
        resp = http_resp_buffer(body, len, false);
        r->bytes_out += len;
    }
    if (!resp)
        return -ENOMEM;
    http_resp_header(resp, "Content-Type", "application/dicom");
    http_resp_header(resp, "Content-Disposition",
                     arena_printf(r->a, "attachment; filename=\"%s.dcm\"", object));
    return http_send(r, 200, resp);
}

/* ---- DELETE ---- */

static int unlink_cb(void *ctx, const char *rel)
{
    return store_unlink(ctx, rel);
}

int wado_delete(struct req *r)
{
    int rc = check_path_uids(r);
    if (rc)
        return rc < 0 ? rc : 0;
    struct index_scope sc = path_scope(r);
    uint64_t n = 0;
    rc = index_delete(r->app->index, &sc, unlink_cb, r->app->store, &n);
    if (rc == -ENOENT)
        return http_error(r, 404, "no such %s",
                          sc.sop_uid ? "instance" : sc.series_uid ? "series" : "study");
    if (rc < 0)
        return http_error(r, 500, "delete failed (%d)", rc);
    /* the kept metadata of the study and series holds what was deleted */
    meta_disk_forget(r->app->meta_disk, sc.study_uid, sc.series_uid);
    log_info("req %llu: deleted %llu instance(s)", (unsigned long long)r->id,
             (unsigned long long)n);
    struct http_resp *resp = http_resp_buffer((void *)"", 0, true);
    if (!resp)
        return -ENOMEM;
    return http_send(r, 204, resp);
}
