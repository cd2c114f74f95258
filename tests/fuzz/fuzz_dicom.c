/* fuzz_dicom.c - the Part 10 parser and everything ingest derives from a
 * parsed file: DICOM JSON, layout (encode + decode), metablob, instance
 * extraction. Input: a (possibly hostile) file. */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "dicom/dcm.h"
#include "dicom/instance.h"
#include "dicom/json.h"
#include "dicom/layout.h"
#include "dicom/metablob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dcm_file *f = NULL;
    char err[256];
    struct dcm_opts o = {0};
    o.max_loaded = (uint64_t)8 << 20;
    if (dcm_parse_mem(data, size, &o, &f, err, sizeof(err)) < 0)
        return 0;
    /* the file's bytes from memory, as ingest has them: fragment starts are
     * read from there (bounds-checked) */
    struct file_bytes src = {-1, data, size};
    struct json_out j;
    json_out_init(&j);
    struct json_uris u = {"1.2", "1.3", "1.4"};
    if (json_write_dataset(f, &u, NULL, &j) == 0) {
        struct layout l;
        if (layout_from_file(f, &src, j.bulk, j.n_bulk, &l) == 0) {
            struct buf b;
            buf_init(&b, 0);
            if (layout_encode(&l, &b) == 0) {
                struct arena *a = arena_new(0);
                struct layout l2;
                if (a)
                    (void)layout_decode(b.data, b.len, a, &l2);
                arena_free(a);
            }
            buf_release(&b);
        }
        struct buf mb, back;
        buf_init(&mb, 0);
        buf_init(&back, 0);
        if (metablob_encode(j.text.data ? j.text.data : "{}", j.text.len, j.marks, j.n_marks,
                            &mb) == 0)
            (void)metablob_inflate(mb.data, mb.len, "http://x", &back);
        buf_release(&mb);
        buf_release(&back);
    }
    json_out_release(&j);
    struct inst in;
    enum inst_status st;
    if (inst_from_file(f, &src, &in, &st, err, sizeof(err)) == 0)
        inst_release(&in);
    else
        inst_release(&in);
    dcm_file_free(f);
    return 0;
}
