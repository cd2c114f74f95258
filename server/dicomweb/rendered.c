/*
 * rendered.c - rendered resources and thumbnails (PS3.18 8.3.5, 10.4.1.1.3
 * "Retrieve Rendered", Supplement 203 thumbnails), and WADO-URI images.
 *
 * index lookup -> cache? -> decode one frame (codecs) -> display pipeline
 * (render.h) -> JPEG / PNG / GIF / WebP. Multi-frame instances as GIF are
 * animated (PS3.18 8.7.4: a multi-frame rendering needs a format that can
 * hold frames). Non-image objects are 406 with a reason.
 */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/dcm.h"
#include "dicom/layout.h"
#include "dicomweb/handlers.h"
#include "dicomweb/mp_out.h"
#include "dicomweb/rendered.h"
#include "dicomweb/transcode.h"
#include "http/mime.h"
#include "index/index.h"
#include "render/cache.h"
#include "render/imgenc.h"
#include "render/render.h"
#include "store/store.h"
#include "core/banned.h"

#define MAX_GIF_FRAMES 1000
#define THUMB_SIZE 128

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

/* Chooses the output format from Accept (and the accept parameter). */
static int choose_format(struct req *r, bool multi, enum img_format *f)
{
    const char *a = query_get(&r->query, "accept");
    if (!a || !*a)
        a = http_header(r, "Accept");
    struct mime_accept ma;
    if (mime_parse_accept(r->a, a, &ma) < 0)
        return -EINVAL;
    double best = -1;
    bool found = false;
    for (unsigned i = 0; i < ma.n; i++) {
        const struct mime_type *t = &ma.ranges[i];
        if (t->q <= 0 || t->q <= best)
            continue;
        enum img_format cand;
        bool ok = true;
        if (!strcmp(t->type, "*") || (!strcmp(t->type, "image") && !strcmp(t->subtype, "*")))
            cand = multi ? IMG_GIF : IMG_JPEG;
        else if (mime_matches(t, "image", "jpeg"))
            cand = IMG_JPEG;
        else if (mime_matches(t, "image", "png"))
            cand = IMG_PNG;
        else if (mime_matches(t, "image", "gif"))
            cand = IMG_GIF;
        else if (mime_matches(t, "image", "webp"))
            cand = IMG_WEBP;
        else
            ok = false;
        if (ok) {
            best = t->q;
            *f = cand;
            found = true;
        }
    }
    return found ? 0 : -ENOTSUP;
}

struct rendering {
    struct app *app;
    struct index_instance ii;
    struct layout l;
    struct dcm_file *f;
    struct render_info ri;
    bool ri_ok;
    int fd;
};

static void rendering_release(struct rendering *g)
{
    if (g->ri_ok)
        render_info_release(&g->ri);
    dcm_file_free(g->f);
    if (g->fd >= 0)
        close(g->fd);
    g->f = NULL;
    g->fd = -1;
    g->ri_ok = false;
}

/* Looks the instance up and prepares its render information. On failure
 * *status and err say why. */
static int rendering_open(struct app *app, struct arena *a, const char *sop,
                          struct rendering *g, unsigned *status, char *err, size_t err_cap)
{
    memset(g, 0, sizeof(*g));
    g->app = app;
    g->fd = -1;
    int r = index_get_instance(app->index, sop, true, a, &g->ii);
    if (r == -ENOENT) {
        *status = 404;
        snprintf(err, err_cap, "no such instance");
        return r;
    }
    if (r == 0)
        r = layout_decode(g->ii.layout, g->ii.layout_len, a, &g->l);
    if (r == 0)
        r = store_open_object(app->store, g->ii.rel_path, &g->fd);
    if (r < 0) {
        *status = 500;
        snprintf(err, err_cap, "the stored instance cannot be read");
        return r;
    }
    if (!(g->l.flags & LAYOUT_PIXELS) || !g->l.rows || !g->l.cols) {
        *status = 406;
        snprintf(err, err_cap, "this object (SOP Class %s) has no image to render",
                 g->ii.sop_class_uid ? g->ii.sop_class_uid : "?");
        return -ENOTSUP;
    }
    struct dcm_opts o = {0};
    o.stop_before_pixels = true;
    r = dcm_parse_fd(g->fd, &o, &g->f, err, err_cap);
    if (r == 0)
        r = render_info_from_file(g->f, g->fd, &g->l, &g->ri);
    if (r < 0) {
        *status = 500;
        if (!err[0])
            snprintf(err, err_cap, "cannot read the image attributes");
        return r;
    }
    g->ri_ok = true;
    return 0;
}

/* Renders frame index of an opened instance. */
static int render_one(struct rendering *g, uint32_t index, const struct render_params *p,
                      struct image8 *im, unsigned *status, char *err, size_t err_cap)
{
    const struct config *c = &g->app->cfg;
    uint64_t fb = layout_native_frame_bytes(&g->l);
    if (g->l.spp && g->l.bits_alloc > 1)
        fb = (uint64_t)g->l.rows * g->l.cols * g->l.spp * (g->l.bits_alloc / 8);
    if (fb > c->max_decoded_bytes) {
        *status = 413;
        snprintf(err, err_cap, "the frame needs %llu decoded bytes, over max_decoded_bytes",
                 (unsigned long long)fb);
        return -E2BIG;
    }
    struct buf px;
    buf_init(&px, c->max_decoded_bytes + 64);
    char photometric[20];
    int r = transcode_frame_canonical(g->fd, &g->l, index, c->max_decoded_bytes, &px,
                                      photometric, err, err_cap);
    if (r < 0) {
        buf_release(&px);
        *status = r == -ENOTSUP ? 406 : r == -E2BIG ? 413 : 500;
        return r;
    }
    r = render_frame(&g->ri, (const uint8_t *)px.data, px.len, photometric, p, im, err, err_cap);
    buf_release(&px);
    if (r < 0)
        *status = r == -EINVAL ? 400 : r == -ENOTSUP ? 406 : r == -E2BIG ? 413 : 500;
    return r;
}

/* Renders frames (0-based) of one instance into out as format. */
static int render_instance(struct app *app, struct arena *a, const char *sop,
                           const uint32_t *frames, uint32_t n_frames, bool all_frames,
                           const struct render_params *p, enum img_format fmt, struct buf *out,
                           unsigned *status, char *err, size_t err_cap)
{
    struct rendering g;
    int r = rendering_open(app, a, sop, &g, status, err, err_cap);
    if (r < 0) {
        rendering_release(&g);
        return r;
    }
    uint32_t n = all_frames ? g.l.n_frames : n_frames;
    if (fmt != IMG_GIF)
        n = 1; /* a still image: the first frame asked (or the first) */
    if (n > MAX_GIF_FRAMES)
        n = MAX_GIF_FRAMES;
    struct image8 *ims = calloc(n ? n : 1, sizeof(*ims));
    if (!ims) {
        rendering_release(&g);
        return -ENOMEM;
    }
    uint32_t done = 0;
    uint64_t out_px = 0;
    for (uint32_t k = 0; k < n && r == 0; k++) {
        uint32_t idx = all_frames ? k : frames[k];
        if (idx >= g.l.n_frames) {
            *status = 404;
            snprintf(err, err_cap, "frame %u does not exist (the instance has %u)", idx + 1,
                     g.l.n_frames);
            r = -ENOENT;
            break;
        }
        r = render_one(&g, idx, p, &ims[k], status, err, err_cap);
        if (r == 0) {
            done++;
            out_px += (uint64_t)ims[k].w * ims[k].h * ims[k].channels;
            if (out_px > app->cfg.max_decoded_bytes) {
                *status = 413;
                snprintf(err, err_cap, "the rendering is over max_decoded_bytes");
                r = -E2BIG;
            }
        }
    }
    if (r == 0) {
        unsigned q = p->quality ? p->quality : app->cfg.jpeg_quality;
        if (fmt == IMG_GIF)
            r = img_encode_gif(ims, done, 10, out);
        else
            r = img_encode(&ims[0], fmt, q, out);
        if (r < 0) {
            *status = 500;
            snprintf(err, err_cap, "image encoding failed");
        }
    }
    for (uint32_t k = 0; k < n; k++)
        image8_release(&ims[k]);
    free(ims);
    rendering_release(&g);
    return r;
}

static int parse_params(struct req *r, struct render_params *p, bool thumbnail)
{
    char err[200];
    if (render_params_parse(query_get(&r->query, "window"), query_get(&r->query, "viewport"),
                            query_get(&r->query, "quality"), p, err, sizeof(err)) < 0) {
        http_error(r, 400, "%s", err);
        return 1;
    }
    if (thumbnail && !p->vw) {
        p->vw = THUMB_SIZE;
        p->vh = THUMB_SIZE;
    }
    return 0;
}

static const char *cache_key(struct req *r, const char *sop, const char *frames,
                             enum img_format fmt, const struct render_params *p)
{
    return arena_printf(r->a, "%s|%s|%d|%s|%s|%s|%u", sop, frames, (int)fmt,
                        query_get(&r->query, "window") ? query_get(&r->query, "window") : "",
                        p->vw ? query_get(&r->query, "viewport") ? query_get(&r->query, "viewport")
                                                                 : "thumb"
                              : "",
                        query_get(&r->query, "quality") ? query_get(&r->query, "quality") : "",
                        r->app->cfg.jpeg_quality);
}

static int send_image(struct req *r, struct buf *img, const char *type, bool cached)
{
    size_t len;
    char *body = buf_detach(img, &len);
    struct http_resp *resp = http_resp_buffer(body, len, false);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += len;
    http_resp_header(resp, "Content-Type", type);
    http_resp_header(resp, "Cache-Control", "private, max-age=3600");
    http_resp_header(resp, "X-Render-Cache", cached ? "hit" : "miss");
    return http_send(r, 200, resp);
}

/* One instance (or listed frames of it) as one image. */
static int rendered_single(struct req *r, const char *sop, const char *frames_param,
                           bool thumbnail)
{
    struct render_params p;
    if (parse_params(r, &p, thumbnail))
        return 0;
    uint32_t *frames = NULL, n = 0;
    bool all = false;
    if (frames_param) {
        size_t cnt = 1;
        for (const char *q = frames_param; *q; q++)
            cnt += *q == ',';
        if (cnt > MAX_GIF_FRAMES)
            return http_error(r, 400, "too many frame numbers");
        frames = arena_alloc(r->a, cnt * sizeof(*frames));
        if (!frames)
            return -ENOMEM;
        const char *q = frames_param;
        while (1) {
            char *end;
            unsigned long v = strtoul(q, &end, 10);
            if (end == q || v == 0 || v > (1ul << 24) || (*end && *end != ',') || *q == '-' ||
                *q == '+' || *q == ' ')
                return http_error(r, 400, "frame numbers must be positive integers separated by "
                                          "commas");
            frames[n++] = (uint32_t)(v - 1);
            if (!*end)
                break;
            q = end + 1;
        }
    }
    /* several frames can only be shown by an animated format: any-type then
     * means GIF for a multi-frame instance, JPEG otherwise (PS3.18 8.7.4) */
    bool multi = frames_param ? n > 1 : false;
    if (!frames_param) {
        struct index_instance ii;
        struct layout l;
        if (index_get_instance(r->app->index, sop, true, r->a, &ii) == 0 &&
            layout_decode(ii.layout, ii.layout_len, r->a, &l) == 0)
            multi = l.n_frames > 1 && !thumbnail;
    }
    enum img_format fmt = IMG_JPEG;
    int rc = choose_format(r, multi, &fmt);
    if (rc == -EINVAL)
        return http_error(r, 400, "malformed Accept");
    if (rc < 0)
        return http_error(r, 406, "rendered images are available as image/jpeg, image/png, "
                                  "image/gif or image/webp");
    if (!frames_param) {
        if (thumbnail) {
            /* the representative frame: the middle one */
            struct arena *a = r->a;
            struct index_instance ii;
            struct layout l;
            if (index_get_instance(r->app->index, sop, true, a, &ii) == 0 &&
                layout_decode(ii.layout, ii.layout_len, a, &l) == 0 && l.n_frames > 1) {
                frames = arena_alloc(a, sizeof(*frames));
                if (!frames)
                    return -ENOMEM;
                frames[0] = l.n_frames / 2;
                n = 1;
            }
        }
        all = fmt == IMG_GIF && !thumbnail && n == 0;
        if (!all && n == 0) {
            frames = arena_alloc(r->a, sizeof(*frames));
            if (!frames)
                return -ENOMEM;
            frames[0] = 0;
            n = 1;
        }
    }
    const char *fkey = all ? "all" : arena_printf(r->a, "%u", n ? frames[0] : 0);
    if (frames_param)
        fkey = frames_param;
    const char *key = cache_key(r, sop, fkey, fmt, &p);
    struct buf img;
    buf_init(&img, (size_t)1 << 30);
    char type[32];
    if (render_cache_get(r->app->cache, key, &img, type))
        return send_image(r, &img, type, true);
    unsigned status = 500;
    char err[256] = "";
    rc = render_instance(r->app, r->a, sop, frames, n, all, &p, fmt, &img, &status, err,
                         sizeof(err));
    if (rc < 0) {
        buf_release(&img);
        return http_error(r, status, "%s", err[0] ? err : "rendering failed");
    }
    render_cache_put(r->app->cache, key, img.data, img.len, img_media_type(fmt));
    return send_image(r, &img, img_media_type(fmt), false);
}

/* Checks that the instance of the URL belongs to its study and series. */
static int check_instance(struct req *r)
{
    for (int i = P_STUDY; i <= P_INSTANCE; i++)
        if (r->param[i] && !uid_ok(r->param[i]))
            return http_error(r, 400, "a UID in the URL is not a valid UID") < 0 ? -EIO : 1;
    if (!r->param[P_INSTANCE])
        return 0;
    struct index_instance ii;
    int rc = index_get_instance(r->app->index, r->param[P_INSTANCE], false, r->a, &ii);
    if (rc == -ENOENT || (rc == 0 && (strcmp(ii.study_uid, r->param[P_STUDY]) ||
                                      strcmp(ii.series_uid, r->param[P_SERIES])))) {
        http_error(r, 404, "no such instance");
        return 1;
    }
    return rc < 0 ? rc : 0;
}

int rendered_instance(struct req *r)
{
    int rc = check_instance(r);
    if (rc)
        return rc < 0 ? rc : 0;
    return rendered_single(r, r->param[P_INSTANCE], r->param[P_FRAMES], false);
}

int thumbnail_instance(struct req *r)
{
    int rc = check_instance(r);
    if (rc)
        return rc < 0 ? rc : 0;
    return rendered_single(r, r->param[P_INSTANCE], r->param[P_FRAMES], true);
}

/* The representative instance of a series or study: the middle image of
 * the first series (by series number) that has images. */
static const char *representative(struct req *r, const char *study, const char *series)
{
    struct index_scope sc = {study, series, NULL};
    struct index_iter *it;
    if (index_iter_open(r->app->index, &sc, false, false, &it) < 0)
        return NULL;
    struct index_instance row;
    const char *first_series = NULL;
    const char *list[4096];
    unsigned n = 0;
    while (index_iter_next(it, &row) == 1) {
        if (!row.n_frames)
            continue; /* no pixel data */
        if (!first_series)
            first_series = arena_strdup(r->a, row.series_uid);
        else if (strcmp(first_series, row.series_uid))
            break;
        if (n < YY_ARRAY_LEN(list))
            list[n++] = arena_strdup(r->a, row.sop_uid);
    }
    index_iter_close(it);
    return n ? list[n / 2] : NULL;
}

int thumbnail_series(struct req *r)
{
    for (int i = P_STUDY; i <= P_SERIES; i++)
        if (r->param[i] && !uid_ok(r->param[i]))
            return http_error(r, 400, "a UID in the URL is not a valid UID");
    const char *sop = representative(r, r->param[P_STUDY], r->param[P_SERIES]);
    if (!sop)
        return http_error(r, 404, "no image in this %s", r->param[P_SERIES] ? "series" : "study");
    return rendered_single(r, sop, NULL, true);
}

/* Study / series rendered: multipart/related, one image per instance
 * (the first frame of each), in series and instance order. */
struct multi_render {
    struct app *app;
    char **sops;
    size_t n, next;
    struct render_params p;
    enum img_format fmt;
    const char *type;
};

static void multi_free(void *ctx)
{
    struct multi_render *m = ctx;
    for (size_t i = 0; i < m->n; i++)
        free(m->sops[i]);
    free(m->sops);
    free(m);
}

static int next_rendered(void *ctx, struct mp_out_part *part)
{
    struct multi_render *m = ctx;
    while (m->next < m->n) {
        const char *sop = m->sops[m->next++];
        struct arena *a = arena_new(0);
        if (!a)
            return -ENOMEM;
        unsigned status = 0;
        char err[256] = "";
        uint32_t f0 = 0;
        int r = render_instance(m->app, a, sop, &f0, 1, false, &m->p, m->fmt, &part->mem,
                                &status, err, sizeof(err));
        arena_free(a);
        if (r == -ENOTSUP && status == 406)
            continue; /* a non-image object of the study: skipped */
        if (r < 0) {
            log_error("rendered: an instance failed (%s); aborting the response", err);
            return r;
        }
        snprintf(part->headers, sizeof(part->headers), "Content-Type: %s\r\n", m->type);
        return 1;
    }
    return 0;
}

int rendered_scope(struct req *r)
{
    for (int i = P_STUDY; i <= P_SERIES; i++)
        if (r->param[i] && !uid_ok(r->param[i]))
            return http_error(r, 400, "a UID in the URL is not a valid UID");
    struct multi_render *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->app = r->app;
    if (parse_params(r, &m->p, false)) {
        free(m);
        return 0;
    }
    int rc = choose_format(r, false, &m->fmt);
    if (rc < 0) {
        free(m);
        return rc == -EINVAL ? http_error(r, 400, "malformed Accept")
                             : http_error(r, 406, "rendered images are available as image/jpeg, "
                                                  "image/png, image/gif or image/webp");
    }
    m->type = img_media_type(m->fmt);
    struct index_scope sc = {r->param[P_STUDY], r->param[P_SERIES], NULL};
    struct index_iter *it;
    rc = index_iter_open(r->app->index, &sc, false, false, &it);
    if (rc < 0) {
        free(m);
        return rc;
    }
    struct index_instance row;
    size_t cap = 0;
    while ((rc = index_iter_next(it, &row)) == 1) {
        if (!row.n_frames)
            continue;
        if (m->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **ns = realloc(m->sops, cap * sizeof(*ns));
            if (!ns) {
                rc = -ENOMEM;
                break;
            }
            m->sops = ns;
        }
        m->sops[m->n] = strdup(row.sop_uid);
        if (!m->sops[m->n]) {
            rc = -ENOMEM;
            break;
        }
        m->n++;
    }
    index_iter_close(it);
    if (rc < 0) {
        multi_free(m);
        return rc;
    }
    if (m->n == 0) {
        multi_free(m);
        return http_error(r, 404, "no image in this %s", r->param[P_SERIES] ? "series" : "study");
    }
    const char *boundary = mp_out_boundary(r);
    const char *type = m->type;
    struct http_resp *resp = mp_out_response(boundary, HTTP_SIZE_UNKNOWN, next_rendered, m,
                                             multi_free, &r->bytes_out);
    if (!resp)
        return -ENOMEM;
    http_resp_header(resp, "Content-Type",
                     arena_printf(r->a, "multipart/related; type=\"%s\"; boundary=%s", type,
                                  boundary));
    return http_send(r, 200, resp);
}

int rendered_wado_uri(struct req *r, const char *sop, unsigned frame, unsigned rows,
                      unsigned columns, bool has_window, double center, double width,
                      unsigned quality, bool png, bool gif)
{
    struct render_params p;
    memset(&p, 0, sizeof(p));
    p.has_window = has_window;
    p.center = center;
    p.width = width;
    p.quality = quality;
    if (rows || columns) {
        p.vw = columns ? columns : 65535;
        p.vh = rows ? rows : 65535;
        if (p.vw > 8192)
            p.vw = 8192;
        if (p.vh > 8192)
            p.vh = 8192;
    }
    enum img_format fmt = png ? IMG_PNG : gif ? IMG_GIF : IMG_JPEG;
    uint32_t f0 = frame ? frame - 1 : 0;
    char *key = arena_printf(r->a, "%s|uri%u|%d|%g,%g|%u,%u|%u", sop, f0, (int)fmt,
                             has_window ? center : 0.0, has_window ? width : 0.0, rows, columns,
                             quality);
    struct buf img;
    buf_init(&img, (size_t)1 << 30);
    char type[32];
    if (render_cache_get(r->app->cache, key, &img, type))
        return send_image(r, &img, type, true);
    unsigned status = 500;
    char err[256] = "";
    int rc = render_instance(r->app, r->a, sop, &f0, 1, false, &p, fmt, &img, &status, err,
                             sizeof(err));
    if (rc < 0) {
        buf_release(&img);
        return http_error(r, status, "%s", err[0] ? err : "rendering failed");
    }
    render_cache_put(r->app->cache, key, img.data, img.len, img_media_type(fmt));
    return send_image(r, &img, img_media_type(fmt), false);
}
