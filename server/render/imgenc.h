/*
 * imgenc.h - 8-bit images to the consumer formats of PS3.18 8.7.4
 * (rendered media types): JPEG (libjpeg-turbo), PNG (libpng), GIF (our own
 * LZW encoder; animated for several frames) and WebP (libwebp).
 * Pure computation into a buffer.
 */
#ifndef YY_IMGENC_H
#define YY_IMGENC_H

#include "core/buf.h"
#include "render/render.h"

enum img_format { IMG_JPEG, IMG_PNG, IMG_GIF, IMG_WEBP };

const char *img_media_type(enum img_format f);

/* One image. quality (1..100) is for JPEG and WebP. Returns 0 or -ENOMEM /
 * -EIO. */
int img_encode(const struct image8 *im, enum img_format f, unsigned quality, struct buf *out);

/* An animated GIF of n frames shown delay_cs hundredths of a second each,
 * looping. All frames must have the same size. */
int img_encode_gif(const struct image8 *frames, unsigned n, unsigned delay_cs, struct buf *out);

#endif
