/*
 * gdcm_shim.h - the C interface to the GDCM pieces we use (12-bit and
 * lossless JPEG decoding). gdcm_shim.cc is the only C++ file of the
 * project: every entry point catches all exceptions and turns them into a
 * negative errno; nothing of GDCM leaks through this header.
 *
 * Callers must validate the codestream first (jpeg.c's jpeg_scan): GDCM is
 * built with assert() on and aborts on some malformed JPEG headers.
 */
#ifndef YY_GDCM_SHIM_H
#define YY_GDCM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The dataset's pixel description, as GDCM wants it. */
struct gdcm_shim_image {
    unsigned rows, cols, spp;
    unsigned bits_alloc, bits_stored, high_bit, pixrep, planar;
    const char *photometric; /* borrowed */
};

/*
 * Decodes one JPEG frame (data/len, borrowed) exactly as GDCM's
 * ImageChangeTransferSyntax would (gdcmconv --raw): no colour conversion,
 * unused high bits cleaned when Bits Stored < Bits Allocated. Writes
 * rows*cols*spp samples of *sample_bytes (1 or 2) bytes, little endian and
 * interleaved, to out (at most out_cap bytes); *out_len gets the count.
 * Returns 0, -EBADMSG (err set), -E2BIG, -ENOMEM, -EINVAL.
 */
int gdcm_shim_jpeg_decode(const struct gdcm_shim_image *img, const uint8_t *data, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len, unsigned *sample_bytes,
                          char *err, size_t err_cap);

#ifdef __cplusplus
}
#endif

#endif
