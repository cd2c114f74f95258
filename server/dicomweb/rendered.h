/*
 * rendered.h - the image side of WADO-URI (rendered.c does the work for
 * both WADO-RS rendered resources and WADO-URI image requests).
 */
#ifndef YY_RENDERED_H
#define YY_RENDERED_H

#include <stdbool.h>

#include "http/http.h"

/* Sends the rendered frame (1-based, 0 = first) of sop as JPEG, PNG or GIF
 * scaled to fit rows x columns (0 = as is), with an optional window. */
int rendered_wado_uri(struct req *r, const char *sop, unsigned frame, unsigned rows,
                      unsigned columns, bool has_window, double center, double width,
                      unsigned quality, bool png, bool gif);

#endif
