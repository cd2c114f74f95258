/*
 * handlers.h - every request handler the route table (http/route.c) names.
 * Handlers are glue: they check the request, call the modules below
 * (index, store, ingest, dicom, codecs) and send one response.
 */
#ifndef YY_HANDLERS_H
#define YY_HANDLERS_H

#include "http/http.h"

/* STOW-RS (stow.c) */
int stow_begin(struct req *r);
int stow_data(struct req *r, const uint8_t *data, size_t len);
int stow_end(struct req *r);

/* QIDO-RS (qido.c) */
int qido_studies(struct req *r);
int qido_series(struct req *r);
int qido_instances(struct req *r);

/* WADO-RS, WADO-URI and DELETE (wado.c) */
int wado_study(struct req *r);      /* retrieve study, series or instance */
int wado_metadata(struct req *r);
int wado_frames(struct req *r);
int wado_bulkdata(struct req *r);
int wado_uri(struct req *r);
int wado_delete(struct req *r);

/* rendered resources and thumbnails (rendered.c) */
int rendered_instance(struct req *r);  /* instance or frames */
int rendered_scope(struct req *r);     /* study or series: multipart */
int thumbnail_instance(struct req *r); /* instance or frame */
int thumbnail_series(struct req *r);   /* series or study */

/* static viewer and service pages (web.c) */
int web_get(struct req *r);
int web_root_redirect(struct req *r);
int service_status(struct req *r);

#endif
