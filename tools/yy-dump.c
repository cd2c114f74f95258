/*
 * yy-dump - prints what ingest computes for a DICOM file, for tests and
 * debugging: `yy-dump json FILE` (the DICOM JSON, BulkDataURIs relative),
 * `yy-dump layout FILE` (transfer syntax, frames, bulk table as JSON),
 * `yy-dump parse FILE` (exit status only; the error on stderr).
 */
#include "core/common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dicom/dcm.h"
#include "dicom/instance.h"
#include "dicom/json.h"
#include "codec.h"
#include "dicom/frame_read.h"
#include "dicom/layout.h"
#include "core/banned.h"

static int dump_layout(const struct layout *l)
{
    printf("{\"ts\":\"%s\",\"flags\":%u,\"rows\":%u,\"cols\":%u,\"spp\":%u,\"bits_alloc\":%u,"
           "\"bits_stored\":%u,\"pixrep\":%u,\"planar\":%u,\"frames\":%u,\"photometric\":\"%s\","
           "\"pixel_offset\":%llu,\"pixel_len\":%llu,\"frame_bytes\":%llu,\"encaps_frames\":[",
           l->ts_uid, l->flags, l->rows, l->cols, l->spp, l->bits_alloc, l->bits_stored,
           l->pixrep, l->planar, l->n_frames, l->photometric,
           (unsigned long long)l->pixel_offset, (unsigned long long)l->pixel_len,
           (unsigned long long)layout_native_frame_bytes(l));
    if ((l->flags & LAYOUT_ENCAPS) && (l->flags & LAYOUT_FRAMES_OK)) {
        for (uint32_t i = 0; i < l->n_frames; i++) {
            printf("%s[", i ? "," : "");
            for (uint32_t k = 0; k < l->frames[i].n_frags; k++) {
                const struct dcm_frag *f = &l->frags[l->frames[i].first_frag + k];
                printf("%s[%llu,%u]", k ? "," : "", (unsigned long long)f->offset, f->len);
            }
            printf("]");
        }
    }
    printf("],\"bulk\":[");
    for (uint32_t i = 0; i < l->n_bulk; i++)
        printf("%s{\"path\":\"%s\",\"offset\":%llu,\"len\":%llu,\"encaps\":%d}", i ? "," : "",
               l->bulk[i].path, (unsigned long long)l->bulk[i].offset,
               (unsigned long long)l->bulk[i].len, (l->bulk[i].flags & DCM_E_ENCAPS) != 0);
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && !strcmp(argv[1], "frame"))) {
        fprintf(stderr, "usage: yy-dump json|layout|parse|decode FILE | frame FILE INDEX\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(argv[2]);
        return 2;
    }
    char err[256];
    struct dcm_file *f = NULL;
    int r = dcm_parse_fd(fd, NULL, &f, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "parse: %s (%d)\n", err, r);
        close(fd);
        return 1;
    }
    struct file_bytes src = {fd, NULL, 0};
    int rc = 0;
    if (!strcmp(argv[1], "json")) {
        struct json_out o;
        json_out_init(&o);
        struct json_uris u = {"S", "SE", "I"};
        r = json_write_dataset(f, &u, NULL, &o);
        if (r < 0) {
            fprintf(stderr, "json: %d\n", r);
            rc = 1;
        } else {
            /* BulkDataURI base marks are left empty: URIs start with /studies */
            fwrite(o.text.data, 1, o.text.len, stdout);
            putchar('\n');
        }
        json_out_release(&o);
    } else if (!strcmp(argv[1], "frame")) {
        /* the stored bytes of one frame (codestream or native) on stdout */
        struct json_out o;
        json_out_init(&o);
        struct json_uris u = {"S", "SE", "I"};
        json_write_dataset(f, &u, NULL, &o);
        struct layout l;
        layout_from_file(f, &src, o.bulk, o.n_bulk, &l);
        struct buf b;
        buf_init(&b, 0);
        unsigned first_bit = 0;
        r = frame_read(fd, &l, (uint32_t)strtoul(argv[3], NULL, 10), &b, &first_bit);
        if (r < 0) {
            fprintf(stderr, "frame: %d\n", r);
            rc = 1;
        } else {
            fwrite(b.data, 1, b.len, stdout);
            if (first_bit)
                fprintf(stderr, "first_bit %u\n", first_bit);
        }
        buf_release(&b);
        json_out_release(&o);
    } else if (!strcmp(argv[1], "decode")) {
        /* decodes every frame (for benchmarks); prints frames and bytes */
        struct json_out o;
        json_out_init(&o);
        struct json_uris u = {"S", "SE", "I"};
        json_write_dataset(f, &u, NULL, &o);
        struct layout l;
        layout_from_file(f, &src, o.bulk, o.n_bulk, &l);
        struct codec_image img = {l.rows, l.cols, l.spp, l.bits_alloc,
                                  l.bits_stored ? l.bits_stored : l.bits_alloc, l.high_bit,
                                  l.pixrep, l.planar, l.photometric, (l.flags & LAYOUT_BIG) != 0,
                                  l.pixel_tag != TAG_PIXEL_DATA};
        size_t fs = codec_frame_size(&img);
        uint8_t *px = fs ? malloc(fs) : NULL;
        unsigned long long total = 0;
        for (uint32_t i = 0; px && i < l.n_frames && rc == 0; i++) {
            struct buf b;
            buf_init(&b, 0);
            unsigned first_bit = 0;
            struct codec_out info;
            r = frame_read(fd, &l, i, &b, &first_bit);
            if (r == 0)
                r = codec_decode(l.ts_uid[0] ? l.ts_uid : "1.2.840.10008.1.2", &img,
                                 (const uint8_t *)b.data, b.len, first_bit, px, fs, &info, err,
                                 sizeof(err));
            if (r < 0) {
                fprintf(stderr, "decode frame %u: %s (%d)\n", i, err, r);
                rc = 1;
            } else {
                total += info.len;
            }
            buf_release(&b);
        }
        free(px);
        printf("%u frames %llu bytes\n", l.n_frames, total);
        json_out_release(&o);
    } else if (!strcmp(argv[1], "layout")) {
        struct inst in;
        enum inst_status st;
        r = inst_from_file(f, &src, &in, &st, err, sizeof(err));
        if (r < 0) {
            /* objects without UIDs still have a layout */
            struct json_out o;
            json_out_init(&o);
            struct json_uris u = {"S", "SE", "I"};
            json_write_dataset(f, &u, NULL, &o);
            struct layout l;
            layout_from_file(f, &src, o.bulk, o.n_bulk, &l);
            dump_layout(&l);
            json_out_release(&o);
        } else {
            dump_layout(&in.layout);
        }
        inst_release(&in);
    }
    dcm_file_free(f);
    close(fd);
    return rc;
}
