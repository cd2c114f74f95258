/*
 * transcode.h - a stored instance or frame in another transfer syntax:
 * native syntaxes to Explicit VR Little Endian (byte order, implicit VR,
 * deflate), compressed to native through codecs/, native to the compressed
 * targets codecs/ can encode.
 *
 * Works on one instance (or frame) in memory at a time; the caller bounds
 * the size (max bytes) before calling. Never produces Implicit VR.
 */
#ifndef YY_TRANSCODE_H
#define YY_TRANSCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dicom/layout.h"

struct sandbox;

/* Decodes of isolated syntaxes go to these worker processes (sandbox.h);
 * NULL decodes in-process. Set once before serving. */
void transcode_set_sandbox(struct sandbox *s);

/* True when an instance stored in from_ts can be delivered in to_ts. */
bool transcode_possible(const char *from_ts, const char *to_ts, const struct layout *l);

/* True when frames stored in ts (compressed) can be decoded here. */
bool transcode_can_decode(const char *ts);

/* The transfer syntax to send for "as stored" (transfer-syntax=*): the
 * stored one, except Implicit VR Little Endian, which is never sent over the
 * web (PS3.18 8.7.3.5.2): Explicit VR Little Endian instead. */
const char *transcode_as_stored(const char *stored_ts);

/* Appends the Part 10 object of the instance in fd (layout l) in to_ts to
 * out. max_bytes bounds decoded pixel data. Returns 0, -ENOTSUP, -E2BIG,
 * -EBADMSG (corrupt stored data; err set), -EIO, -ENOMEM. */
int transcode_instance(int fd, const struct layout *l, const char *to_ts, unsigned quality,
                       uint64_t max_bytes, struct buf *out, char *err, size_t err_cap);

/* Appends frame index of the instance as native little-endian pixels
 * (decoding when stored compressed; 1-bit data packed from bit 0).
 * *photometric receives the colour space of the bytes. */
int transcode_frame_native(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                           struct buf *out, char photometric[20], char *err, size_t err_cap);

/* Appends frame index as the canonical frame of codecs/codec.h (samples
 * interleaved, little endian, 1-bit unpacked to a byte per pixel), decoded
 * when stored compressed; *photometric receives its colour space. */
int transcode_frame_canonical(int fd, const struct layout *l, uint32_t index, uint64_t max_bytes,
                              struct buf *out, char photometric[20], char *err, size_t err_cap);

/* True when frames of l can be encoded in to_ts (a compressed syntax). */
bool transcode_frame_possible(const struct layout *l, const char *to_ts);

/* Appends frame index encoded in to_ts (a compressed syntax). */
int transcode_frame_to(int fd, const struct layout *l, uint32_t index, const char *to_ts,
                       unsigned quality, uint64_t max_bytes, struct buf *out, char *err,
                       size_t err_cap);

#endif
