/*
 * codec_priv.h - what the files behind codec.h share: one decoder or encoder
 * per library, and small helpers for the canonical frame layout.
 *
 * codec.c validates the image and the output capacity before it calls a
 * decoder, so every decoder may write codec_frame_size(img) bytes to out
 * (never more) and must still check everything it reads from a codestream
 * against img. Decoders fill info->len and info->photometric; codec.c fills
 * the other info fields beforehand from img.
 */
#ifndef YY_CODEC_PRIV_H
#define YY_CODEC_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* No frame or codestream of more than this many bytes is handled. */
#define CODEC_MAX_BYTES ((size_t)1 << 31)

#define TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define TS_DEFLATED_LE "1.2.840.10008.1.2.1.99"
#define TS_EXPLICIT_BE "1.2.840.10008.1.2.2"
#define TS_ENCAPS_UNCOMPRESSED "1.2.840.10008.1.2.1.98"
#define TS_RLE "1.2.840.10008.1.2.5"
#define TS_JPEG_BASELINE "1.2.840.10008.1.2.4.50"
#define TS_JPEG_EXTENDED "1.2.840.10008.1.2.4.51"
#define TS_JPEG_LOSSLESS "1.2.840.10008.1.2.4.57"
#define TS_JPEG_LOSSLESS_SV1 "1.2.840.10008.1.2.4.70"
#define TS_JPEGLS "1.2.840.10008.1.2.4.80"
#define TS_JPEGLS_NEAR "1.2.840.10008.1.2.4.81"
#define TS_J2K_LOSSLESS "1.2.840.10008.1.2.4.90"
#define TS_J2K "1.2.840.10008.1.2.4.91"
#define TS_HTJ2K_LOSSLESS "1.2.840.10008.1.2.4.201"
#define TS_HTJ2K_RPCL "1.2.840.10008.1.2.4.202"
#define TS_HTJ2K "1.2.840.10008.1.2.4.203"
#define TS_JXL_LOSSLESS "1.2.840.10008.1.2.4.110"
#define TS_JXL_JPEG "1.2.840.10008.1.2.4.111"
#define TS_JXL "1.2.840.10008.1.2.4.112"
#define TS_DEFLATED_FRAME "1.2.840.10008.1.2.8.1"

/* Writes a message to err (may be NULL) and returns r. */
int codec_fail(int r, char *err, size_t err_cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets info->photometric (truncated to fit). */
void codec_set_photometric(struct codec_out *info, const char *pi);

/* Bytes per sample of the canonical output of img (1-bit -> 1). */
static inline unsigned codec_sample_bytes(const struct codec_image *img)
{
    return img->bits_alloc <= 8 ? 1u : (unsigned)img->bits_alloc / 8u;
}

static inline size_t codec_pixels(const struct codec_image *img)
{
    return (size_t)img->rows * img->cols;
}

/* Stores v as a little-endian sample of nbytes (1, 2 or 4) at index i. */
static inline void codec_put(uint8_t *out, size_t i, unsigned nbytes, uint32_t v)
{
    uint8_t *p = out + i * nbytes;
    p[0] = (uint8_t)v;
    if (nbytes > 1)
        p[1] = (uint8_t)(v >> 8);
    if (nbytes > 2) {
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    }
}

static inline uint32_t codec_get(const uint8_t *in, size_t i, unsigned nbytes)
{
    const uint8_t *p = in + i * nbytes;
    uint32_t v = p[0];
    if (nbytes > 1)
        v |= (uint32_t)p[1] << 8;
    if (nbytes > 2)
        v |= (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return v;
}

static inline bool codec_pi_is(const struct codec_image *img, const char *pi)
{
    const char *p = img->photometric ? img->photometric : "";
    while (*p == ' ')
        p++;
    size_t n = 0;
    while (pi[n] && p[n] == pi[n])
        n++;
    if (pi[n])
        return false;
    for (p += n; *p; p++)
        if (*p != ' ')
            return false;
    return true;
}

static inline bool codec_pi_is_ybr(const struct codec_image *img)
{
    const char *p = img->photometric ? img->photometric : "";
    return p[0] == 'Y' && p[1] == 'B' && p[2] == 'R';
}

/* True when every sample fits the declared Bits Stored (unsigned: below
 * 2^bs; signed: equal to its own sign extension from bs bits), so a coder
 * of bs-bit precision reproduces the container bytes exactly. */
bool codec_samples_fit(const struct codec_image *img, const uint8_t *pixels);

/* Sign-extends v from bits to 32 bits. */
static inline int32_t codec_sext(uint32_t v, unsigned bits)
{
    if (bits >= 32)
        return (int32_t)v;
    uint32_t m = 1u << (bits - 1);
    v &= (m << 1) - 1;
    return (int32_t)((v ^ m) - m);
}

/* ---- per library (each in its own file) ---- */

#define CODEC_DECODE_ARGS                                                                          \
    const struct codec_image *img, const uint8_t *data, size_t len, uint8_t *out, size_t out_cap,  \
        struct codec_out *info, char *err, size_t err_cap

/* Encoders get pixels of at least codec_frame_size(img) bytes (len), except
 * uncompressed YBR_FULL_422 (2 bytes a pixel) for JPEG. */
#define CODEC_ENCODE_ARGS                                                                          \
    const struct codec_image *img, const uint8_t *pixels, size_t len,                              \
        const struct codec_encode_opts *o, uint8_t **out, size_t *out_len, struct codec_out *info, \
        char *err, size_t err_cap

/* native.c: stored native bytes (first_bit for 1-bit data) -> canonical */
int native_decode(const struct codec_image *img, const uint8_t *data, size_t len,
                  unsigned first_bit, uint8_t *out, size_t out_cap, struct codec_out *info,
                  char *err, size_t err_cap);
/* native.c: Deflated Image Frame Compression (raw deflate or zlib) */
int deflate_frame_decode(CODEC_DECODE_ARGS);

/* rle.c */
int rle_decode(CODEC_DECODE_ARGS);
int rle_encode(CODEC_ENCODE_ARGS);

/* jpeg.c: libjpeg-turbo for 8-bit DCT; GDCM (gdcm_shim.cc) for the rest */
int jpeg_decode(CODEC_DECODE_ARGS);
int jpeg_encode(CODEC_ENCODE_ARGS);

/* jls.c: CharLS */
int jls_decode(CODEC_DECODE_ARGS);
int jls_encode(CODEC_ENCODE_ARGS);

/* j2k.c: OpenJPEG (J2K and HTJ2K decode, J2K encode); HTJ2K encode via
 * ojph_shim.cc */
int j2k_decode(CODEC_DECODE_ARGS);
int htj2k_decode(CODEC_DECODE_ARGS);
int j2k_encode(CODEC_ENCODE_ARGS);
int htj2k_encode(CODEC_ENCODE_ARGS);

/* jxl.c: libjxl */
int jxl_decode(CODEC_DECODE_ARGS);

#endif
