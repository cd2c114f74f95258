/*
 * write.h - writes a parsed dataset back as a Part 10 object in Explicit VR
 * Little Endian (native or encapsulated pixel data): the output side of
 * transcoding (WADO-RS with a transfer syntax other than the stored one).
 *
 * Every element is written as parsed (values converted to little endian),
 * with bulk values read from the stored file through frame_read_range();
 * sequences and items are written with undefined lengths. The File Meta
 * Information is regenerated (group length, new TransferSyntaxUID, our
 * Implementation Class UID); every other attribute is kept, except the
 * pixel-encoding ones the caller overrides (struct dcm_pixels).
 */
#ifndef YY_WRITE_H
#define YY_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dicom/layout.h"

struct dcm_file;

#define YY_IMPLEMENTATION_CLASS_UID "1.2.826.0.1.3680043.10.1389.1"
#define YY_IMPLEMENTATION_VERSION "YINGYUN_010"

enum dcm_pixels_kind {
    PIX_KEEP,   /* pixel data copied as stored (native: byte-swapped if needed) */
    PIX_NATIVE, /* replaced by native bytes (all frames, concatenated) */
    PIX_ENCAPS, /* replaced by encapsulated frames (one fragment each) */
};

/* Attribute values to set in the written dataset (NULL/negative = keep). */
struct dcm_overrides {
    const char *photometric;
    int planar;              /* PlanarConfiguration, -1 keep */
    int bits_alloc;          /* -1 keep */
    int bits_stored;         /* -1 keep */
    int high_bit;            /* -1 keep */
    const char *lossy;       /* LossyImageCompression "01" */
    const char *lossy_ratio; /* LossyImageCompressionRatio (DS) */
    const char *lossy_method;/* LossyImageCompressionMethod (CS) */
};

struct dcm_pixels {
    enum dcm_pixels_kind kind;
    const uint8_t *native;   /* PIX_NATIVE */
    size_t native_len;
    const uint8_t *const *frames; /* PIX_ENCAPS: n_frames codestreams */
    const size_t *frame_lens;
    uint32_t n_frames;
    struct dcm_overrides ov;
};

/* Appends the Part 10 object (preamble, meta, dataset) to out. fd is the
 * stored file (for bulk values), l its layout. ts_uid must be an Explicit VR
 * Little Endian syntax (native or encapsulated). Returns 0, -EIO, -EBADMSG,
 * -ENOMEM/-E2BIG. */
int dcm_write_part10(const struct dcm_file *f, int fd, const struct layout *l, const char *ts_uid,
                     const struct dcm_pixels *px, struct buf *out);

#endif
