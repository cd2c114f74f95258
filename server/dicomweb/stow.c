/*
 * stow.c - STOW-RS (PS3.18 10.5): POST /studies[/{study}] with
 * multipart/related; type="application/dicom".
 *
 * Streaming: body chunks go through the multipart reader (mp_in) straight
 * into one temp file per part (through a small write buffer); when a part
 * ends it is ingested (parse, fsync, rename, index) before the next part's
 * bytes are accepted. Memory stays flat whatever the request size.
 *
 * Response (PS3.18 10.5.3): 200 all stored, 202 some failed, 409 none
 * stored, 400 malformed request, 413 over a limit, 415 wrong media type,
 * 503 disk full with nothing stored; body application/dicom+json with
 * ReferencedSOPSequence / FailedSOPSequence (FailureReason + ErrorComment).
 */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/json.h"
#include "dicomweb/handlers.h"
#include "dicomweb/ingest.h"
#include "http/mime.h"
#include "http/mp_in.h"
#include "store/store.h"
#include "core/banned.h"

#define WBUF (256 * 1024)

struct part_result {
    struct ingest_result res;
    bool ingested;              /* res comes from the ingest batch */
    struct part_result *next;
};

struct stow {
    struct req *r;
    struct mp_in *mp;
    const char *study;          /* from the URL, or NULL */
    struct store_tmp tmp;
    bool in_part;
    bool part_failed;           /* bytes of the current part are being skipped */
    uint16_t part_fail_code;
    const char *part_fail_why;
    uint64_t part_bytes;
    uint8_t *wbuf;
    size_t wlen;
    unsigned n_parts, n_stored, n_failed, n_nospace;
    struct part_result *results, **tail;
    struct ingest_batch *batch; /* the parts being ingested in the background */
    /* the last part received, not yet handed to the batch: it is ingested
     * in the background when another part begins, else in this thread at
     * the end of the body (a single-instance STOW starts no thread) */
    struct store_tmp held;
    struct ingest_result *held_res;
    const char *malformed;      /* mp_in error text */
    bool xml;                   /* respond in DICOM XML? (no: JSON only here) */
};

/* Hands the held part (if any) to the background batch. */
static void dispatch_held(struct stow *st)
{
    if (!st->held_res)
        return;
    ingest_batch_add(st->batch, &st->held, st->study, st->held_res);
    store_tmp_init(&st->held); /* moved */
    st->held_res = NULL;
}

static void stow_release(void *arg)
{
    struct stow *st = arg;
    dispatch_held(st); /* a complete part is stored even if the request ends early */
    ingest_batch_free(st->batch); /* waits: the results live in the arena */
    st->batch = NULL;
    mp_in_free(st->mp);
    if (st->tmp.fd >= 0 || st->tmp.path[0])
        store_tmp_discard(&st->tmp);
    free(st->wbuf);
}

static struct part_result *add_result(struct stow *st)
{
    struct part_result *p = arena_zalloc(st->r->a, sizeof(*p));
    if (!p)
        return NULL;
    *st->tail = p;
    st->tail = &p->next;
    return p;
}

static void record_failure(struct stow *st, uint16_t code, const char *why)
{
    struct part_result *p = add_result(st);
    st->n_failed++;
    if (code == FAIL_OUT_OF_RESOURCES)
        st->n_nospace++;
    if (!p)
        return;
    p->res.outcome = INGEST_FAILED;
    p->res.failure_reason = code;
    snprintf(p->res.reason, sizeof(p->res.reason), "%s", why);
}

static int flush_wbuf(struct stow *st)
{
    if (st->wlen == 0)
        return 0;
    int r = store_tmp_write(&st->tmp, st->wbuf, st->wlen);
    st->wlen = 0;
    return r;
}

static void skip_part(struct stow *st, uint16_t code, const char *why)
{
    st->part_failed = true;
    st->part_fail_code = code;
    st->part_fail_why = why;
    store_tmp_discard(&st->tmp);
    st->wlen = 0;
}

static int on_part_begin(void *ctx, const struct mp_part_headers *h)
{
    struct stow *st = ctx;
    struct config *c = &st->r->app->cfg;
    dispatch_held(st);
    st->in_part = true;
    st->part_failed = false;
    st->part_bytes = 0;
    st->wlen = 0;
    if (++st->n_parts > c->max_parts)
        return -E2BIG;
    if (h->content_type) {
        struct mime_type mt;
        if (mime_parse(st->r->a, h->content_type, &mt) < 0 ||
            !mime_matches(&mt, "application", "dicom")) {
            skip_part(st, FAIL_CANNOT_UNDERSTAND,
                      "part is not application/dicom (this endpoint takes DICOM Part 10 "
                      "objects)");
            return 0;
        }
    }
    int r = store_tmp_create(st->r->app->store, &st->tmp);
    if (r == -ENOSPC) {
        skip_part(st, FAIL_OUT_OF_RESOURCES, "disk full: the object was not stored");
        return 0;
    }
    if (r < 0) {
        skip_part(st, FAIL_PROCESSING, "cannot create a temporary file");
        return 0;
    }
    return 0;
}

static int on_part_data(void *ctx, const uint8_t *data, size_t len)
{
    struct stow *st = ctx;
    if (st->part_failed)
        return 0;
    st->part_bytes += len;
    if (st->part_bytes > st->r->app->cfg.max_part_bytes) {
        skip_part(st, FAIL_OUT_OF_RESOURCES, "part larger than the configured max_part_bytes");
        return 0;
    }
    while (len) {
        size_t room = WBUF - st->wlen;
        if (len >= WBUF && st->wlen == 0) {
            /* large chunk: write straight through */
            int r = store_tmp_write(&st->tmp, data, len);
            if (r < 0)
                goto werr;
            return 0;
        }
        size_t take = len < room ? len : room;
        memcpy(st->wbuf + st->wlen, data, take);
        st->wlen += take;
        data += take;
        len -= take;
        if (st->wlen == WBUF && flush_wbuf(st) < 0)
            goto werr;
    }
    return 0;
werr:
    skip_part(st, FAIL_OUT_OF_RESOURCES, "disk full: the object was not stored");
    return 0;
}

static int on_part_end(void *ctx)
{
    struct stow *st = ctx;
    st->in_part = false;
    if (st->part_failed) {
        record_failure(st, st->part_fail_code, st->part_fail_why);
        return 0;
    }
    if (flush_wbuf(st) < 0) {
        store_tmp_discard(&st->tmp);
        record_failure(st, FAIL_OUT_OF_RESOURCES, "disk full: the object was not stored");
        return 0;
    }
    struct part_result *p = add_result(st);
    if (!p) {
        store_tmp_discard(&st->tmp);
        return -ENOMEM;
    }
    /* made durable and indexed in the background while the next part
     * arrives (or here at the end of the body when it is the last one);
     * counted in stow_end once all are done */
    p->ingested = true;
    st->held = st->tmp;
    st->held_res = &p->res;
    store_tmp_init(&st->tmp); /* moved */
    return 0;
}

/* Counts the background ingests' outcomes (after ingest_batch_wait). */
static void count_ingested(struct stow *st)
{
    unsigned k = 0;
    for (struct part_result *p = st->results; p; p = p->next) {
        k++;
        if (!p->ingested)
            continue;
        if (p->res.outcome == INGEST_FAILED) {
            st->n_failed++;
            if (p->res.failure_reason == FAIL_OUT_OF_RESOURCES)
                st->n_nospace++;
            log_info("req %llu: part %u refused (0x%04X): %s", (unsigned long long)st->r->id, k,
                     p->res.failure_reason, p->res.reason);
        } else {
            st->n_stored++;
        }
    }
}

static const struct mp_in_cb g_cb = {on_part_begin, on_part_data, on_part_end};

int stow_begin(struct req *r)
{
    struct app *app = r->app;
    const char *study = r->param[P_STUDY];
    if (study && !*study)
        study = NULL;
    if (study) {
        size_t l = strlen(study);
        bool ok = l > 0 && l <= 64;
        for (size_t i = 0; ok && i < l; i++)
            ok = (study[i] >= '0' && study[i] <= '9') || study[i] == '.';
        if (!ok)
            return http_error(r, 400, "the study in the URL is not a valid UID");
    }
    const char *ct = http_header(r, "Content-Type");
    if (!ct)
        return http_error(r, 415, "Content-Type is missing; expected multipart/related; "
                                  "type=\"application/dicom\"");
    struct mime_type mt;
    if (mime_parse(r->a, ct, &mt) < 0)
        return http_error(r, 400, "malformed Content-Type");
    if (!mime_matches(&mt, "multipart", "related")) {
        if (mime_matches(&mt, "application", "dicom"))
            return http_error(r, 415, "send DICOM objects as multipart/related; "
                                      "type=\"application/dicom\" (PS3.18 10.5.1)");
        return http_error(r, 415, "unsupported Content-Type %s/%s; expected multipart/related; "
                                  "type=\"application/dicom\"",
                          mt.type, mt.subtype);
    }
    const char *type = mime_param(&mt, "type");
    if (type) {
        struct mime_type tt;
        if (mime_parse(r->a, type, &tt) < 0 || !mime_matches(&tt, "application", "dicom"))
            return http_error(r, 415, "multipart type \"%s\" is not supported; only "
                                      "application/dicom",
                              type);
    }
    const char *boundary = mime_param(&mt, "boundary");
    if (!boundary || !*boundary || strlen(boundary) > 70)
        return http_error(r, 400, "multipart/related without a valid boundary parameter");
    /* response media type: DICOM JSON (application/json accepted as well) */
    const char *accept = http_header(r, "Accept");
    if (accept) {
        struct mime_accept ma;
        if (mime_parse_accept(r->a, accept, &ma) < 0)
            return http_error(r, 400, "malformed Accept header");
        bool ok = false;
        for (unsigned i = 0; i < ma.n && !ok; i++)
            ok = ma.ranges[i].q > 0 && (mime_matches(&ma.ranges[i], "application", "dicom+json") ||
                                        mime_matches(&ma.ranges[i], "application", "json"));
        if (!ok)
            return http_error(r, 406, "the store response is available as application/dicom+json "
                                      "only");
    }
    const char *cl = http_header(r, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || *end)
            return http_error(r, 400, "malformed Content-Length");
        if (n > app->cfg.max_body_bytes)
            return http_error(r, 413, "request body of %llu bytes is over the limit of %llu", n,
                              (unsigned long long)app->cfg.max_body_bytes);
    }
    struct stow *st = arena_zalloc(r->a, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->r = r;
    st->study = study;
    store_tmp_init(&st->tmp);
    store_tmp_init(&st->held);
    st->tail = &st->results;
    st->wbuf = malloc(WBUF);
    st->mp = mp_in_new(boundary, 16384, &g_cb, st);
    /* up to 4 parts of this request being made durable at once */
    if (!st->wbuf || !st->mp || ingest_batch_new(app->ingest, 4, &st->batch) < 0 ||
        arena_on_release(r->a, stow_release, st) < 0) {
        free(st->wbuf);
        mp_in_free(st->mp);
        ingest_batch_free(st->batch);
        return -ENOMEM;
    }
    r->state = st;
    return 0;
}

int stow_data(struct req *r, const uint8_t *data, size_t len)
{
    struct stow *st = r->state;
    if (!st || st->malformed)
        return 0;
    int rc = mp_in_feed(st->mp, data, len);
    if (rc == -E2BIG)
        return http_error(r, 413, "more than %u parts in one request", r->app->cfg.max_parts);
    if (rc < 0) {
        st->malformed = mp_in_error(st->mp);
        if (!st->malformed || !*st->malformed)
            st->malformed = "malformed multipart body";
        if (st->in_part)
            store_tmp_discard(&st->tmp);
    }
    return 0;
}

static int put_uid_elem(struct buf *b, const char *tag, const char *vr, const char *v)
{
    int r = buf_printf(b, "\"%s\":{\"vr\":\"%s\"", tag, vr);
    if (v && *v) {
        r |= buf_puts(b, ",\"Value\":[");
        r |= json_put_string(b, v, strlen(v));
        r |= buf_puts(b, "]");
    }
    return r | buf_putc(b, '}');
}

int stow_end(struct req *r)
{
    struct stow *st = r->state;
    if (!st)
        return http_error(r, 500, "no upload state");
    if (!st->malformed) {
        int rc = mp_in_finish(st->mp);
        if (rc < 0) {
            st->malformed = mp_in_error(st->mp);
            if (!st->malformed || !*st->malformed)
                st->malformed = "malformed multipart body";
        }
    }
    if (st->in_part)
        store_tmp_discard(&st->tmp);
    if (st->held_res) {
        (void)ingest_tmp(st->r->app->ingest, &st->held, st->study, st->held_res);
        store_tmp_init(&st->held);
        st->held_res = NULL;
    }
    ingest_batch_wait(st->batch);
    count_ingested(st);
    const char *base = http_base_url(r);
    struct buf b;
    buf_init(&b, (size_t)64 << 20);
    int rc = buf_putc(&b, '{');
    /* RetrieveURL of the study when every stored instance is in one study */
    const char *one_study = NULL;
    bool multi = false;
    for (struct part_result *p = st->results; p; p = p->next) {
        if (p->res.outcome == INGEST_FAILED)
            continue;
        if (!one_study)
            one_study = p->res.study_uid;
        else if (strcmp(one_study, p->res.study_uid) != 0)
            multi = true;
    }
    bool first = true;
    if (one_study && !multi) {
        char *u = arena_printf(r->a, "%s/dicomweb/studies/%s", base, one_study);
        rc |= put_uid_elem(&b, "00081190", "UR", u);
        first = false;
    }
    if (st->n_failed) {
        rc |= buf_printf(&b, "%s\"00081198\":{\"vr\":\"SQ\",\"Value\":[", first ? "" : ",");
        first = false;
        bool f1 = true;
        for (struct part_result *p = st->results; p; p = p->next) {
            if (p->res.outcome != INGEST_FAILED)
                continue;
            rc |= buf_puts(&b, f1 ? "{" : ",{");
            f1 = false;
            rc |= buf_printf(&b, "\"00000902\":{\"vr\":\"LO\",\"Value\":[");
            rc |= json_put_string(&b, p->res.reason, strlen(p->res.reason));
            rc |= buf_puts(&b, "]},");
            rc |= put_uid_elem(&b, "00081150", "UI", p->res.sop_class_uid);
            rc |= buf_putc(&b, ',');
            rc |= put_uid_elem(&b, "00081155", "UI", p->res.sop_uid);
            rc |= buf_printf(&b, ",\"00081197\":{\"vr\":\"US\",\"Value\":[%u]}}",
                             p->res.failure_reason);
        }
        rc |= buf_puts(&b, "]}");
    }
    if (st->n_stored) {
        rc |= buf_printf(&b, "%s\"00081199\":{\"vr\":\"SQ\",\"Value\":[", first ? "" : ",");
        bool f1 = true;
        for (struct part_result *p = st->results; p; p = p->next) {
            if (p->res.outcome == INGEST_FAILED)
                continue;
            rc |= buf_puts(&b, f1 ? "{" : ",{");
            f1 = false;
            rc |= put_uid_elem(&b, "00081150", "UI", p->res.sop_class_uid);
            rc |= buf_putc(&b, ',');
            rc |= put_uid_elem(&b, "00081155", "UI", p->res.sop_uid);
            rc |= buf_putc(&b, ',');
            char *u = arena_printf(r->a, "%s/dicomweb/studies/%s/series/%s/instances/%s", base,
                                   p->res.study_uid, p->res.series_uid, p->res.sop_uid);
            rc |= put_uid_elem(&b, "00081190", "UR", u);
            rc |= buf_putc(&b, '}');
        }
        rc |= buf_puts(&b, "]}");
    }
    rc |= buf_puts(&b, "}\n");
    if (rc) {
        buf_release(&b);
        return -ENOMEM;
    }
    unsigned status;
    const char *warning = NULL;
    if (st->malformed) {
        status = 400;
        warning = arena_printf(r->a, "299 yingyun \"malformed multipart body: %s\"", st->malformed);
        log_info("req %llu: STOW malformed body: %s (%u stored before it)",
                 (unsigned long long)r->id, st->malformed, st->n_stored);
    } else if (st->n_parts == 0) {
        status = 400;
        warning = "299 yingyun \"the request contains no parts\"";
    } else if (st->n_failed == 0) {
        status = 200;
    } else if (st->n_stored > 0) {
        status = 202;
    } else if (st->n_nospace > 0) {
        status = 503;
        warning = "299 yingyun \"disk full: nothing was stored\"";
        log_error("req %llu: STOW refused: disk full", (unsigned long long)r->id);
    } else {
        status = 409;
    }
    size_t len;
    char *body = buf_detach(&b, &len);
    struct http_resp *resp = http_resp_buffer(body, len, false);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += len;
    http_resp_header(resp, "Content-Type", "application/dicom+json");
    if (warning)
        http_resp_header(resp, "Warning", warning);
    if (status == 503)
        http_resp_header(resp, "Retry-After", "60");
    return http_send(r, status, resp);
}
