/*
 * frame_read.h - reads a stored frame's (or bulk value's) bytes from an open
 * file, using the layout computed at ingest: no parsing on reads.
 *
 * Encapsulated frames come back as the concatenation of their fragments
 * (the codestream); native frames as their stored bytes (for 1-bit data,
 * the bytes that hold the frame, with the bit offset of its first pixel).
 * Deflated datasets are inflated up to the wanted range.
 * Owns nothing; the fd is borrowed.
 */
#ifndef YY_FRAME_READ_H
#define YY_FRAME_READ_H

#include <stdint.h>

#include "core/buf.h"
#include "dicom/layout.h"

/* Appends frame index (0-based) to out. *first_bit (may be NULL) receives
 * the bit offset of the first pixel for 1-bit native data, else 0.
 * Returns 0, -ENOENT (no such frame / no pixel data / frames not located),
 * -EIO, -EBADMSG (file shorter than its layout), -E2BIG / -ENOMEM. */
int frame_read(int fd, const struct layout *l, uint32_t index, struct buf *out,
               unsigned *first_bit);

/* Byte range of a native frame or a frame's single fragment in the file,
 * for zero-copy sending: returns 0 and the range when the frame is one
 * contiguous run of file bytes that needs no conversion (not deflated, not
 * big endian, not 1-bit), else -ENOTSUP. */
int frame_file_range(const struct layout *l, uint32_t index, uint64_t *off, uint64_t *len);

/* Appends len bytes at dataset-stream offset off (file offset unless the
 * dataset is deflated) to out. */
int frame_read_range(int fd, const struct layout *l, uint64_t off, uint64_t len, struct buf *out);

#endif
