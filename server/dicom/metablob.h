/*
 * metablob.h - an instance's DICOM JSON as stored in the index: compressed
 * once at ingest, served many times without recompressing.
 *
 * The JSON text is cut at every BulkDataURI base insertion point (json.h
 * marks) into segments; each segment is raw deflate ending in a full flush
 * (byte-aligned, no final block), with its CRC-32 and length. So a response
 * can be assembled by concatenation:
 *   - identity: inflate each segment, write the request's base URL between;
 *   - gzip: header + segments and a once-per-request compressed base piece
 *     between them + final block + CRC (crc32_combine) + size. No instance
 *     JSON is recompressed for a series or study metadata request.
 *
 * Pure functions over memory; no I/O.
 */
#ifndef YY_METABLOB_H
#define YY_METABLOB_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Encodes json[0..len) cut at marks[0..n_marks) (increasing offsets). */
int metablob_encode(const char *json, size_t len, const size_t *marks, size_t n_marks,
                    struct buf *out);

/* Appends the JSON text to out with base written at every mark. Returns 0,
 * -EBADMSG for a corrupt blob, -ENOMEM/-E2BIG from out. */
int metablob_inflate(const void *blob, size_t len, const char *base, struct buf *out);

/* A compressed piece of a gzip member being assembled. */
struct gz_piece {
    struct buf z;   /* raw deflate, full-flushed */
    uint32_t crc;   /* CRC-32 of the uncompressed bytes */
    uint64_t ulen;  /* uncompressed length */
};

void gz_piece_init(struct gz_piece *p);
void gz_piece_release(struct gz_piece *p);
/* Compresses text into p (replacing its contents). */
int gz_piece_make(struct gz_piece *p, const char *text, size_t len);

/* Running state of a gzip member built by concatenation. */
struct gz_cat {
    uint32_t crc;
    uint64_t ulen;
};

void gz_cat_init(struct gz_cat *g);
/* Appends the 10-byte gzip header. */
int gz_cat_header(struct buf *out);
/* Appends a piece and accounts for it. */
int gz_cat_piece(struct gz_cat *g, const struct gz_piece *p, struct buf *out);
/* Appends the blob's segments with base_piece between them. */
int gz_cat_blob(struct gz_cat *g, const void *blob, size_t len, const struct gz_piece *base_piece,
                struct buf *out);
/* Appends the final empty block and the gzip trailer. */
int gz_cat_trailer(const struct gz_cat *g, struct buf *out);

#endif
