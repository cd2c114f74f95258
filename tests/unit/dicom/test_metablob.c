/* Unit tests for dicom/metablob.c: the stored, compressed instance JSON.
 * Every blob is read back two ways: by metablob_inflate (the server's
 * identity path) and as the gzip member gz_cat assembles, inflated by zlib
 * (an independent decoder, as a client's would be). Covers real JSON,
 * empty and single-byte segments, incompressible text larger than the
 * first output estimate, and damaged blobs. */
#include "core/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "core/buf.h"
#include "dicom/metablob.h"
#include "core/banned.h"

#define BASE "http://h:1/dicomweb/studies/1.2/series/3.4/instances/5.6"

/* The text with base written at every mark: what inflate must give. */
static char *expected(const char *text, size_t len, const size_t *marks, size_t n, size_t *out_len)
{
    struct buf b;
    buf_init(&b, (size_t)1 << 30);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t end = i < n ? marks[i] : len;
        (void)buf_append(&b, text + start, end - start);
        if (i < n)
            (void)buf_append(&b, BASE, strlen(BASE));
        start = end;
    }
    *out_len = b.len;
    return b.data;
}

/* zlib's inflate of a whole gzip member; NULL when zlib refuses it. */
static char *gunzip(const void *gz, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return NULL;
    size_t cap = len * 8 + 4096;
    char *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)gz;
    z.avail_in = (uInt)len;
    int zr = Z_OK;
    size_t got = 0;
    while (out && zr == Z_OK) {
        if (got == cap) {
            char *bigger = realloc(out, cap * 2);
            if (!bigger) {
                free(out);
                out = NULL;
                break;
            }
            out = bigger;
            cap *= 2;
        }
        z.next_out = (Bytef *)out + got;
        z.avail_out = (uInt)(cap - got);
        zr = inflate(&z, Z_NO_FLUSH);
        got = cap - z.avail_out;
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END || z.avail_in != 0) {
        free(out);
        return NULL;
    }
    *out_len = got;
    return out;
}

static void round_trip(const char *what, const char *text, size_t len, const size_t *marks,
                       size_t n)
{
    check_current = what;
    size_t want_len;
    char *want = expected(text, len, marks, n, &want_len);
    struct buf blob, back, gz;
    buf_init(&blob, (size_t)1 << 30);
    buf_init(&back, (size_t)1 << 30);
    buf_init(&gz, (size_t)1 << 30);
    CHECK_INT_EQ(metablob_encode(text, len, marks, n, &blob), 0);
    CHECK_INT_EQ(metablob_inflate(blob.data, blob.len, BASE, &back), 0);
    CHECK_INT_EQ(back.len, want_len);
    CHECK(back.len == want_len && memcmp(back.data, want, want_len) == 0);

    struct gz_piece base;
    gz_piece_init(&base);
    CHECK_INT_EQ(gz_piece_make(&base, BASE, strlen(BASE)), 0);
    struct gz_cat g;
    gz_cat_init(&g);
    CHECK_INT_EQ(gz_cat_header(&gz), 0);
    CHECK_INT_EQ(gz_cat_blob(&g, blob.data, blob.len, &base, &gz), 0);
    /* a second copy, as in a series response: members concatenate */
    CHECK_INT_EQ(gz_cat_blob(&g, blob.data, blob.len, &base, &gz), 0);
    CHECK_INT_EQ(gz_cat_trailer(&g, &gz), 0);
    size_t un_len = 0;
    char *un = gunzip(gz.data, gz.len, &un_len);
    CHECK(un != NULL);
    CHECK_INT_EQ(un_len, 2 * want_len);
    CHECK(un && un_len == 2 * want_len && memcmp(un, want, want_len) == 0 &&
          memcmp(un + want_len, want, want_len) == 0);
    free(un);
    gz_piece_release(&base);
    buf_release(&blob);
    buf_release(&back);
    buf_release(&gz);
    free(want);
}

static const char k_json[] =
    "{\"00080005\":{\"vr\":\"CS\",\"Value\":[\"ISO_IR 192\"]},"
    "\"00080016\":{\"vr\":\"UI\",\"Value\":[\"1.2.840.10008.5.1.4.1.1.2\"]},"
    "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Wang^XiaoDong\","
    "\"Ideographic\":\"\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1\"}]},"
    "\"00280010\":{\"vr\":\"US\",\"Value\":[512]},\"00280011\":{\"vr\":\"US\",\"Value\":[512]},"
    "\"00431028\":{\"vr\":\"OB\",\"BulkDataURI\":\"/bulkdata/00431028\"},"
    "\"7FE00010\":{\"vr\":\"OW\",\"BulkDataURI\":\"/frames/1\"}}";

static void test_real_json(void)
{
    size_t len = strlen(k_json);
    const char *a = strstr(k_json, "/bulkdata/");
    const char *b = strstr(k_json, "/frames/");
    size_t marks[2] = {(size_t)(a - k_json), (size_t)(b - k_json)};
    round_trip("real json, two marks", k_json, len, marks, 2);
    round_trip("real json, no mark", k_json, len, NULL, 0);
}

static void test_edges(void)
{
    size_t len = strlen(k_json);
    /* marks at both ends and twice at one point: empty segments */
    size_t marks[4] = {0, 10, 10, len};
    round_trip("empty segments", k_json, len, marks, 4);
    round_trip("empty text", "", 0, NULL, 0);
    size_t one[1] = {0};
    round_trip("empty text, one mark", "", 0, one, 1);
    round_trip("one byte", "{", 1, NULL, 0);
}

static void test_large(void)
{
    /* 3 MiB: repetitive JSON (compresses well), then bytes of a generator
     * that do not compress at all, longer than stored blocks hold */
    size_t len = (size_t)3 << 20;
    char *t = malloc(len);
    CHECK(t != NULL);
    if (!t)
        return;
    for (size_t i = 0; i < len / 2; i++)
        t[i] = k_json[i % (sizeof(k_json) - 1)];
    uint64_t x = 88172645463325252ull;
    for (size_t i = len / 2; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t[i] = (char)(x >> 24);
    }
    size_t marks[3] = {1000, len / 2, len / 2 + 70000};
    round_trip("3 MiB, half incompressible", t, len, marks, 3);
    free(t);
}

static void test_damaged(void)
{
    check_current = "damaged";
    struct buf blob, back;
    buf_init(&blob, (size_t)1 << 30);
    buf_init(&back, (size_t)1 << 30);
    size_t marks[1] = {20};
    CHECK_INT_EQ(metablob_encode(k_json, strlen(k_json), marks, 1, &blob), 0);
    /* truncated anywhere, and a flipped byte in the compressed data */
    for (size_t cut = 0; cut < blob.len; cut++) {
        buf_reset(&back);
        CHECK(metablob_inflate(blob.data, cut, BASE, &back) < 0);
    }
    blob.data[blob.len - 3] ^= 0x5a;
    buf_reset(&back);
    int r = metablob_inflate(blob.data, blob.len, BASE, &back);
    CHECK(r < 0 || back.len != strlen(k_json) + strlen(BASE) ||
          memcmp(back.data + 20 + strlen(BASE), k_json + 20, strlen(k_json) - 20) != 0);
    buf_release(&blob);
    buf_release(&back);
}

int main(void)
{
    RUN(test_real_json);
    RUN(test_edges);
    RUN(test_large);
    RUN(test_damaged);
    return check_summary();
}
