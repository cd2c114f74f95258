/* wado_uri_parse.c - see wado_uri_parse.h. */
#include "core/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicomweb/wado_uri_parse.h"
#include "http/mime.h"
#include "core/banned.h"

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

static int uint_param(const struct query *q, const char *name, unsigned max, unsigned *out,
                      char *err, size_t err_cap)
{
    const char *v = query_get(q, name);
    *out = 0;
    if (!v)
        return 0;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 9;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i] >= '0' && v[i] <= '9';
    unsigned long x = ok ? strtoul(v, NULL, 10) : 0;
    if (!ok || x == 0 || x > max) {
        snprintf(err, err_cap, "%s must be an integer from 1 to %u", name, max);
        return -EINVAL;
    }
    *out = (unsigned)x;
    return 0;
}

static int num_param(const struct query *q, const char *name, bool *have, double *out, char *err,
                     size_t err_cap)
{
    const char *v = query_get(q, name);
    *have = false;
    if (!v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || strlen(v) > 32) {
        snprintf(err, err_cap, "%s must be a number", name);
        return -EINVAL;
    }
    *have = true;
    *out = d;
    return 0;
}

int wado_uri_parse(struct arena *a, const struct query *q, struct wado_uri *o, char *err,
                   size_t err_cap)
{
    memset(o, 0, sizeof(*o));
    const char *rt = query_get(q, "requestType");
    if (!rt || strcmp(rt, "WADO") != 0) {
        snprintf(err, err_cap, "requestType=WADO is required");
        return -EINVAL;
    }
    o->study = query_get(q, "studyUID");
    o->series = query_get(q, "seriesUID");
    o->object = query_get(q, "objectUID");
    if (!o->study || !o->series || !o->object) {
        snprintf(err, err_cap, "studyUID, seriesUID and objectUID are required");
        return -EINVAL;
    }
    if (!uid_ok(o->study) || !uid_ok(o->series) || !uid_ok(o->object)) {
        snprintf(err, err_cap, "studyUID, seriesUID and objectUID must be valid UIDs");
        return -EINVAL;
    }
    o->transfer_syntax = query_get(q, "transferSyntax");
    if (o->transfer_syntax && !uid_ok(o->transfer_syntax)) {
        snprintf(err, err_cap, "transferSyntax must be a UID");
        return -EINVAL;
    }
    const char *ct = query_get(q, "contentType");
    if (ct) {
        /* PS3.18 9.1.2.1.6: a list of media types */
        struct mime_accept ma;
        if (mime_parse_accept(a, ct, &ma) < 0) {
            snprintf(err, err_cap, "malformed contentType");
            return -EINVAL;
        }
        for (unsigned i = 0; i < ma.n; i++) {
            const struct mime_type *t = &ma.ranges[i];
            bool any = !strcmp(t->type, "*") && !strcmp(t->subtype, "*");
            if (mime_matches(t, "application", "dicom"))
                o->want_dicom = true;
            if (mime_matches(t, "image", "jpeg") || any)
                o->want_jpeg = true;
            if (mime_matches(t, "image", "png"))
                o->want_png = true;
            if (mime_matches(t, "image", "gif"))
                o->want_gif = true;
        }
    } else {
        o->want_jpeg = true; /* PS3.18 9.1.2.1.6: default image/jpeg */
    }
    int r;
    if ((r = uint_param(q, "frameNumber", 1u << 24, &o->frame, err, err_cap)) < 0 ||
        (r = uint_param(q, "rows", 65535, &o->rows, err, err_cap)) < 0 ||
        (r = uint_param(q, "columns", 65535, &o->columns, err, err_cap)) < 0 ||
        (r = uint_param(q, "imageQuality", 100, &o->quality, err, err_cap)) < 0)
        return r;
    bool hc, hw;
    if ((r = num_param(q, "windowCenter", &hc, &o->window_center, err, err_cap)) < 0 ||
        (r = num_param(q, "windowWidth", &hw, &o->window_width, err, err_cap)) < 0)
        return r;
    if (hc != hw) {
        snprintf(err, err_cap, "windowCenter and windowWidth go together");
        return -EINVAL;
    }
    if (hw && o->window_width <= 0) {
        snprintf(err, err_cap, "windowWidth must be positive");
        return -EINVAL;
    }
    o->has_window = hc && hw;
    return 0;
}
