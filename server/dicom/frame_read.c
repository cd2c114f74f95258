/* frame_read.c - see frame_read.h. */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dicom/frame_read.h"
#include "core/banned.h"

static int pread_all(int fd, uint8_t *dst, uint64_t len, uint64_t off)
{
    while (len > 0) {
        size_t want = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)len;
        ssize_t n = pread(fd, dst, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -EIO;
        if (n == 0)
            return -EBADMSG;
        dst += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Inflates the dataset stream from its start and keeps [off, off+len). */
static int inflate_range(int fd, const struct layout *l, uint64_t off, uint64_t len,
                         struct buf *out)
{
    int r = buf_reserve(out, (size_t)len);
    if (r < 0)
        return r;
    enum { IN = 65536, OUT = 65536 };
    uint8_t *in = malloc(IN), *tmp = malloc(OUT);
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (!in || !tmp || inflateInit2(&z, -MAX_WBITS) != Z_OK) {
        free(in);
        free(tmp);
        return -ENOMEM;
    }
    uint64_t raw = l->dataset_offset, pos = 0, need_end = off + len;
    r = 0;
    bool done = false;
    while (!done && pos < need_end) {
        if (z.avail_in == 0) {
            ssize_t n = pread(fd, in, IN, (off_t)raw);
            if (n <= 0) {
                r = n < 0 ? -EIO : -EBADMSG;
                break;
            }
            raw += (uint64_t)n;
            z.next_in = in;
            z.avail_in = (uInt)n;
        }
        z.next_out = tmp;
        z.avail_out = OUT;
        int zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) {
            r = -EBADMSG;
            break;
        }
        done = zr == Z_STREAM_END;
        uint64_t got = OUT - z.avail_out;
        /* keep the overlap of [pos, pos+got) with [off, need_end) */
        uint64_t a = pos > off ? pos : off;
        uint64_t b = pos + got < need_end ? pos + got : need_end;
        if (b > a) {
            r = buf_append(out, tmp + (a - pos), (size_t)(b - a));
            if (r < 0)
                break;
        }
        pos += got;
    }
    if (r == 0 && pos < need_end)
        r = -EBADMSG;
    inflateEnd(&z);
    free(in);
    free(tmp);
    return r;
}

int frame_read_range(int fd, const struct layout *l, uint64_t off, uint64_t len, struct buf *out)
{
    if (l->flags & LAYOUT_DEFLATED)
        return inflate_range(fd, l, off, len, out);
    if (len > (uint64_t)SIZE_MAX / 2)
        return -E2BIG;
    int r = buf_reserve(out, (size_t)len);
    if (r < 0)
        return r;
    r = pread_all(fd, (uint8_t *)out->data + out->len, len, off);
    if (r < 0)
        return r;
    out->len += (size_t)len;
    out->data[out->len] = 0;
    return 0;
}

static int native_range(const struct layout *l, uint32_t index, uint64_t *off, uint64_t *len,
                        unsigned *first_bit)
{
    uint64_t fb = layout_native_frame_bytes(l);
    if (!fb)
        return -ENOENT;
    if (l->bits_alloc == 1) {
        uint64_t bits = (uint64_t)l->rows * l->cols * l->spp;
        uint64_t start = bits * index;
        *off = l->pixel_offset + start / 8;
        *first_bit = (unsigned)(start % 8);
        *len = (start % 8 + bits + 7) / 8;
    } else {
        *off = l->pixel_offset + fb * index;
        *len = fb;
        *first_bit = 0;
    }
    if (*off + *len > l->pixel_offset + l->pixel_len)
        return -EBADMSG;
    return 0;
}

int frame_read(int fd, const struct layout *l, uint32_t index, struct buf *out,
               unsigned *first_bit)
{
    unsigned fbit = 0;
    if (first_bit)
        *first_bit = 0;
    if (!(l->flags & LAYOUT_PIXELS) || !(l->flags & LAYOUT_FRAMES_OK) || index >= l->n_frames)
        return -ENOENT;
    if (!(l->flags & LAYOUT_ENCAPS)) {
        uint64_t off, len;
        int r = native_range(l, index, &off, &len, &fbit);
        if (r < 0)
            return r;
        if (first_bit)
            *first_bit = fbit;
        return frame_read_range(fd, l, off, len, out);
    }
    const struct layout_frame *f = &l->frames[index];
    uint64_t total = 0;
    for (uint32_t k = 0; k < f->n_frags; k++)
        total += l->frags[f->first_frag + k].len;
    int r = buf_reserve(out, (size_t)total);
    if (r < 0)
        return r;
    for (uint32_t k = 0; k < f->n_frags && r == 0; k++) {
        const struct dcm_frag *fr = &l->frags[f->first_frag + k];
        r = frame_read_range(fd, l, fr->offset, fr->len, out);
    }
    return r;
}

int frame_file_range(const struct layout *l, uint32_t index, uint64_t *off, uint64_t *len)
{
    if (!(l->flags & LAYOUT_PIXELS) || !(l->flags & LAYOUT_FRAMES_OK) || index >= l->n_frames)
        return -ENOENT;
    if (l->flags & (LAYOUT_DEFLATED | LAYOUT_BIG))
        return -ENOTSUP;
    if (!(l->flags & LAYOUT_ENCAPS)) {
        unsigned fbit;
        if (l->bits_alloc == 1)
            return -ENOTSUP;
        return native_range(l, index, off, len, &fbit);
    }
    const struct layout_frame *f = &l->frames[index];
    if (f->n_frags != 1)
        return -ENOTSUP;
    *off = l->frags[f->first_frag].offset;
    *len = l->frags[f->first_frag].len;
    return 0;
}
