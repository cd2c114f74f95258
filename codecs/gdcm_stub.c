/*
 * gdcm_stub.c - gdcm_shim.h for the server process, which does not load
 * GDCM: the syntaxes GDCM decodes (12-bit DCT and lossless JPEG) are always
 * decoded in the codec worker processes (server/sandbox/), which link the
 * real shim. Keeping GDCM's C++ libraries and their static dictionaries out
 * of the server saves about 8 MiB of resident memory.
 */
#include "core/common.h"

#include <errno.h>
#include <stdio.h>

#include "gdcm_shim.h"
#include "core/banned.h"

int gdcm_shim_jpeg_decode(const struct gdcm_shim_image *img, const uint8_t *data, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len, unsigned *sample_bytes,
                          char *err, size_t err_cap)
{
    (void)img;
    (void)data;
    (void)len;
    (void)out;
    (void)out_cap;
    (void)out_len;
    (void)sample_bytes;
    snprintf(err, err_cap, "this JPEG process is decoded by the codec worker processes only");
    return -ENOTSUP;
}
