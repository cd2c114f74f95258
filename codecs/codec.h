/*
 * codec.h - the one interface to pixel codecs: decode one frame of any
 * supported transfer syntax to native pixels, and encode native pixels to
 * the syntaxes we transcode to.
 *
 * Behind it, the fastest correct library per syntax: libjpeg-turbo (8-bit
 * JPEG), GDCM through an extern "C" shim that catches every exception
 * (12-bit and lossless JPEG), CharLS (JPEG-LS), OpenJPEG (JPEG 2000 and
 * HTJ2K decode), OpenJPH (HTJ2K encode), libjxl (JPEG XL), zlib (Deflated
 * Image Frame Compression), and our own code for RLE and native data.
 *
 * Native output ("canonical frame", as ../shared/corpus/README.md defines
 * for REFERENCE.tsv): samples interleaved per pixel whatever the Planar
 * Configuration, each sample little-endian in a Bits Allocated container
 * (1-bit data unpacked to one byte per pixel, 0/1), values as stored or as
 * the decoder outputs them (high bits not masked, no sign extension, no
 * LUT). Colour space as the decoder leaves it: JPEG YCbCr stays YBR_FULL
 * (chroma upsampled), J2K/HTJ2K YBR_RCT/ICT become RGB; out->photometric
 * says which. Uncompressed YBR_FULL_422 stays as stored (Y0 Y1 Cb Cr).
 *
 * Must not: read files, allocate without a size check (out_cap bounds
 * everything), trust any length in a codestream, crash on hostile input.
 * Thread-safe: no global mutable state.
 */
#ifndef YY_CODEC_H
#define YY_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The image attributes a codec needs (from the dataset). */
struct codec_image {
    uint16_t rows, cols;
    uint16_t spp;          /* SamplesPerPixel */
    uint16_t bits_alloc;   /* 1, 8, 16, 32, 64 */
    uint16_t bits_stored;
    uint16_t high_bit;
    uint16_t pixrep;       /* 0 unsigned, 1 signed */
    uint16_t planar;       /* PlanarConfiguration of the stored data */
    const char *photometric; /* of the stored data, e.g. "YBR_FULL_422" */
    bool big_endian;       /* native data from Explicit VR Big Endian */
    bool float_data;       /* Float / Double Float Pixel Data */
};

struct codec_out {
    size_t len;                /* bytes written to out */
    char photometric[20];      /* colour space of the output bytes */
    uint16_t bits_alloc;       /* container of the output (1-bit input -> 8) */
    uint16_t bits_stored;      /* as found in the codestream when it says */
    uint16_t pixrep;           /* signedness of the output samples */
};

/* Bytes a decoded canonical frame of img takes (0 if img is unusable). */
size_t codec_frame_size(const struct codec_image *img);

/* True when ts_uid can be decoded here. */
bool codec_can_decode(const char *ts_uid);

/*
 * Decodes one frame. data/len is the frame: for encapsulated syntaxes the
 * concatenation of the frame's fragments; for native syntaxes (Implicit /
 * Explicit LE / BE, Deflated after inflation) the frame's stored bytes, for
 * 1-bit data the bytes holding it with first_bit the bit offset of its
 * first pixel. out must hold codec_frame_size(img) bytes (out_cap checked).
 * Returns 0, -ENOTSUP (syntax or image type not handled), -EBADMSG
 * (corrupt or inconsistent codestream; err set), -E2BIG (out_cap too
 * small), -ENOMEM.
 */
int codec_decode(const char *ts_uid, const struct codec_image *img, const uint8_t *data,
                 size_t len, unsigned first_bit, uint8_t *out, size_t out_cap,
                 struct codec_out *info, char *err, size_t err_cap);

/* Encoding parameters. */
struct codec_encode_opts {
    unsigned quality;          /* JPEG baseline 1..100 (0 = 90) */
};

/*
 * Encodes one canonical frame (as codec_decode produces, photometric in
 * img->photometric, interleaved) to ts_uid: JPEG baseline (.4.50, 8-bit
 * only), JPEG 2000 lossless (.4.90), HTJ2K lossless (.4.201), JPEG-LS
 * lossless (.4.80), RLE (.1.2.5). On success *out is a malloc'ed
 * codestream of *out_len bytes (caller frees) and info->photometric tells
 * the photometric interpretation the encoded frame must be declared with
 * (e.g. "YBR_FULL_422" for JPEG baseline colour). -ENOTSUP when the image
 * cannot be encoded in that syntax (e.g. 16-bit to JPEG baseline).
 */
int codec_encode(const char *ts_uid, const struct codec_image *img, const uint8_t *pixels,
                 size_t len, const struct codec_encode_opts *o, uint8_t **out, size_t *out_len,
                 struct codec_out *info, char *err, size_t err_cap);

/* True when ts_uid is a target codec_encode handles. */
bool codec_can_encode(const char *ts_uid);

#endif
