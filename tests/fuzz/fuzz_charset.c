/* fuzz_charset.c - Specific Character Set conversion. The first line of the
 * input is the (0008,0005) value, the rest the text; output must be valid
 * UTF-8. */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "dicom/charset.h"
#include "dicom/vr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
    if (!nl)
        return 0;
    struct charset cs;
    (void)charset_parse((const char *)data, (size_t)(nl - data), &cs, NULL);
    const uint8_t *text = nl + 1;
    size_t len = size - (size_t)(text - data);
    static const uint16_t vrs[] = {VR_PN, VR_LO, VR_LT};
    for (size_t i = 0; i < 3; i++) {
        struct buf out;
        buf_init(&out, (size_t)16 << 20);
        if (charset_to_utf8(&cs, text, len, vrs[i], &out) == 0 && out.data &&
            !valid_utf8((const unsigned char *)out.data, out.len))
            __builtin_trap();
        buf_release(&out);
    }
    return 0;
}
