/*
 * layout.h - where the bytes of a stored instance are: pixel description,
 * frame positions and bulk values, computed once at ingest and stored in the
 * index, so that no read parses a file again.
 *
 * Owns: the encoded form (a compact versioned binary blob) and its decoding
 * into arena memory. Decoding validates every count and offset of the blob.
 * Must not: read files.
 */
#ifndef YY_LAYOUT_H
#define YY_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dicom/dcm.h"

struct arena;
struct json_bulk;

enum layout_flags {
    LAYOUT_DEFLATED = 1 << 0, /* offsets are in the inflated dataset stream */
    LAYOUT_BIG = 1 << 1,      /* values in the file are big endian */
    LAYOUT_PIXELS = 1 << 2,   /* top-level pixel data present */
    LAYOUT_ENCAPS = 1 << 3,   /* pixel data is encapsulated */
    LAYOUT_FRAMES_OK = 1 << 4 /* frames could be located */
};

struct layout_frame {
    uint32_t first_frag; /* index into frags */
    uint32_t n_frags;
};

struct layout_bulk {
    const char *path; /* tag path as used in BulkDataURIs */
    uint32_t tag;
    uint16_t vr;
    uint16_t flags;   /* DCM_E_ENCAPS for encapsulated pixel data */
    uint64_t offset;
    uint64_t len;
};

struct layout {
    unsigned flags;
    const char *ts_uid;
    uint64_t dataset_offset; /* file offset where the (possibly deflated) dataset starts */
    /* top-level pixel data */
    uint32_t pixel_tag;
    uint16_t pixel_vr;
    uint64_t pixel_offset;
    uint64_t pixel_len;
    uint16_t rows, cols, spp, bits_alloc, bits_stored, high_bit, pixrep, planar;
    uint32_t n_frames;
    const char *photometric;
    /* encapsulated pixel data: fragments (BOT excluded) and frames */
    uint32_t n_frags;
    struct dcm_frag *frags;
    struct layout_frame *frames; /* n_frames entries when FRAMES_OK and ENCAPS */
    uint32_t n_bulk;
    struct layout_bulk *bulk;
};

/* The bytes of a parsed file, for the reads its parse did not keep: the
 * whole file in memory (mem, len) while the caller still has it, else fd
 * (borrowed; -1 and mem NULL: none). */
struct file_bytes {
    int fd;
    const uint8_t *mem;
    size_t len;
};

/* Fills l from a parsed file and the bulk list written with its JSON.
 * src (may be NULL) lets it read the first bytes of fragments when frame
 * boundaries must be found from codestream markers. Memory comes from f's
 * arena. Returns 0 or -ENOMEM. Frames that cannot be located leave
 * LAYOUT_FRAMES_OK clear (not an error: the object is still stored). */
int layout_from_file(const struct dcm_file *f, const struct file_bytes *src,
                     const struct json_bulk *bulk, size_t n_bulk, struct layout *l);

int layout_encode(const struct layout *l, struct buf *out);
/* Decodes blob into l with memory from a. Returns 0, -EBADMSG, -ENOMEM. */
int layout_decode(const void *blob, size_t len, struct arena *a, struct layout *l);

/* Bytes of one native frame (rounded up to whole bytes for 1-bit data), or
 * 0 when the pixel description is unusable. */
uint64_t layout_native_frame_bytes(const struct layout *l);

/* Bulk entry for path, or NULL. */
const struct layout_bulk *layout_find_bulk(const struct layout *l, const char *path);

#endif
