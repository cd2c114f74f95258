/*
 * render.h - native pixels to an 8-bit image a browser can show, through
 * the display pipeline of PS3.3 C.11 / PS3.4 N: Modality LUT (rescale or
 * LUT sequence) -> VOI LUT (the request's window, else the file's first
 * window or VOI LUT, else the frame's value range; LINEAR, LINEAR_EXACT or
 * SIGMOID) -> MONOCHROME1 / Presentation LUT Shape inversion; colour as
 * RGB, YBR_* converted to RGB, PALETTE COLOR through its (possibly
 * segmented) LUTs. Then crop and scale to the viewport (PS3.18 8.3.5.1),
 * area-averaged when shrinking and bilinear when enlarging, aspect kept.
 *
 * Pure computation over memory; the caller decodes the frame and bounds its
 * size. Owns: struct render_info's LUT arrays (render_info_release).
 */
#ifndef YY_RENDER_H
#define YY_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dicom/layout.h"

struct dcm_file;

enum voi_fn { VOI_LINEAR, VOI_LINEAR_EXACT, VOI_SIGMOID };

struct lut {
    uint32_t n;          /* entries (65536 when the descriptor says 0) */
    int32_t first;       /* first input value mapped */
    uint16_t bits;       /* bits per entry */
    uint16_t *data;      /* owned; n entries */
};

/* What the pipeline needs from the dataset (read once per instance). */
struct render_info {
    uint16_t rows, cols, spp, bits_alloc, bits_stored, high_bit, pixrep;
    char photometric[20];
    bool float_data;
    double slope, intercept;
    struct lut modality_lut;  /* n == 0 when absent */
    unsigned n_windows;
    double center[4], width[4];
    enum voi_fn voi_fn;
    struct lut voi_lut;       /* first VOI LUT Sequence item; n == 0 when absent */
    bool inverse;             /* Presentation LUT Shape INVERSE */
    struct lut palette[3];    /* PALETTE COLOR R, G, B */
    uint32_t n_frames;
    bool is_image;            /* has pixel data we can show */
};

void render_info_release(struct render_info *ri);

/* Reads the attributes from a parsed dataset; bulk LUT data (palette LUTs
 * are often over the inline threshold) is read from fd through the layout.
 * Returns 0, -ENOMEM, -EBADMSG (inconsistent LUT descriptors). */
int render_info_from_file(const struct dcm_file *f, int fd, const struct layout *l,
                          struct render_info *ri);

struct render_params {
    bool has_window;
    double center, width;
    enum voi_fn fn;
    bool fn_given;
    unsigned vw, vh;          /* viewport; 0 = the source size */
    bool has_region;          /* source region sx, sy, sw, sh in pixels */
    double sx, sy, sw, sh;
    unsigned quality;         /* 1..100, 0 = default */
};

/* An 8-bit image: 1 (gray) or 3 (RGB) channels, rows packed. */
struct image8 {
    unsigned w, h, channels;
    uint8_t *px; /* owned: image8_release */
};

void image8_release(struct image8 *im);

/*
 * Renders one decoded frame. pixels/len: the canonical frame (codec.h) in
 * colour space photometric (as the decoder left it: "YBR_FULL", "RGB",
 * "MONOCHROME2", ... or the stored "YBR_FULL_422" for native data).
 * Returns 0, -EINVAL (bad parameters: the message goes to err), -ENOTSUP
 * (a pixel format we cannot show), -ENOMEM.
 */
int render_frame(const struct render_info *ri, const uint8_t *pixels, size_t len,
                 const char *photometric, const struct render_params *p, struct image8 *out,
                 char *err, size_t err_cap);

/* Parses the PS3.18 8.3.5 query parameters window=, viewport=, quality=
 * (values as received, decoded). Any may be NULL. -EINVAL with err. */
int render_params_parse(const char *window, const char *viewport, const char *quality,
                        struct render_params *p, char *err, size_t err_cap);

#endif
