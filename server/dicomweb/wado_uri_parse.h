/*
 * wado_uri_parse.h - the WADO-URI request (PS3.18 9.1.2): requestType,
 * studyUID, seriesUID, objectUID, contentType (a list), transferSyntax,
 * frameNumber, rows, columns, windowCenter, windowWidth. Pure parsing and
 * validation; -EINVAL with err naming the parameter (400).
 */
#ifndef YY_WADO_URI_PARSE_H
#define YY_WADO_URI_PARSE_H

#include <stdbool.h>

#include "http/query.h"

struct arena;

struct wado_uri {
    const char *study, *series, *object;
    const char *transfer_syntax; /* NULL when absent */
    bool want_dicom;             /* application/dicom acceptable */
    bool want_jpeg;              /* image/jpeg acceptable (the default) */
    bool want_png;
    bool want_gif;
    unsigned frame;              /* 1-based, 0 when absent */
    unsigned rows, columns;      /* 0 when absent */
    bool has_window;
    double window_center, window_width;
    unsigned quality;            /* imageQuality 1..100, 0 absent */
};

int wado_uri_parse(struct arena *a, const struct query *q, struct wado_uri *out, char *err,
                   size_t err_cap);

#endif
