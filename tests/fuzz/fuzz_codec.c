/* fuzz_codec.c - every decoder behind codec_decode(). Input: a 16-byte
 * header (syntax index, rows, cols, samples, bits allocated/stored, pixel
 * representation, planar, photometric index, first bit) then the frame. The
 * decoders must reject whatever does not match, never write past out_cap. */
#include "core/common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "sandbox/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const g_ts[] = {
    "1.2.840.10008.1.2",      "1.2.840.10008.1.2.1",    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.4.111",
    "1.2.840.10008.1.2.8.1",
};

static const char *const g_pi[] = {"MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL",
                                   "YBR_FULL_422", "PALETTE COLOR", "YBR_ICT", "YBR_RCT"};

/* Syntaxes whose third-party decoders abort or hang on hostile input run in
 * the server's worker processes (sandbox.h) when YY_WORKER names the
 * yingyun-codec-worker binary, exactly as in production; the rest runs
 * in-process. */
static struct sandbox *g_sb;
static bool g_sb_tried;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_sb_tried) {
        g_sb_tried = true;
        const char *bin = getenv("YY_WORKER");
        if (bin && *bin && sandbox_start(bin, 1, 3000, &g_sb) < 0)
            g_sb = NULL;
    }
    if (size < 16)
        return 0;
    struct codec_image img;
    memset(&img, 0, sizeof(img));
    const char *ts = g_ts[data[0] % (sizeof(g_ts) / sizeof(g_ts[0]))];
    img.rows = (uint16_t)(data[1] | data[2] << 8);
    img.cols = (uint16_t)(data[3] | data[4] << 8);
    img.spp = data[5] % 4 ? data[5] % 4 : 1;
    static const uint16_t ba[] = {1, 8, 16, 32};
    img.bits_alloc = ba[data[6] % 4];
    img.bits_stored = data[7] % 33 ? data[7] % 33 : img.bits_alloc;
    if (img.bits_stored > img.bits_alloc)
        img.bits_stored = img.bits_alloc;
    img.high_bit = img.bits_stored ? img.bits_stored - 1 : 0;
    img.pixrep = data[8] & 1;
    img.planar = data[9] & 1;
    img.photometric = g_pi[data[10] % (sizeof(g_pi) / sizeof(g_pi[0]))];
    img.big_endian = data[11] & 1;
    unsigned first_bit = data[12] % 8;
    size_t fs = codec_frame_size(&img);
    if (fs == 0 || fs > ((size_t)16 << 20))
        return 0;
    uint8_t *out = malloc(fs);
    if (!out)
        return 0;
    struct codec_out info;
    char err[256];
    int r;
    if (sandbox_wanted(ts)) {
        if (!g_sb) {
            free(out);
            return 0; /* not isolated: not fuzzed in-process */
        }
        r = sandbox_decode(g_sb, ts, &img, data + 16, size - 16, first_bit, out, fs, &info, err,
                           sizeof(err));
    } else {
        r = codec_decode(ts, &img, data + 16, size - 16, first_bit, out, fs, &info, err,
                         sizeof(err));
    }
    if (r == 0 && info.len > fs)
        __builtin_trap();
    free(out);
    return 0;
}
