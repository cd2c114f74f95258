/* Unit tests for dicom/json_scan.c: member walk over JSON text, including
 * truncated and hostile text (every prefix of a real object). */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dicom/json_scan.h"
#include "core/banned.h"

static const char *k_obj =
    "{\"00080005\":{\"vr\":\"CS\",\"Value\":[\"ISO_IR 192\"]},"
    " \"00100010\" : {\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Wang^Xiao \\\"}{[\"}]},\n"
    "\"00186011\":{\"vr\":\"SQ\",\"Value\":[{\"00186012\":{\"vr\":\"US\",\"Value\":[1]}},{}]},"
    "\"00189182\":{\"vr\":\"FD\",\"Value\":[40.185848236083984,-1e-3]},"
    "\"7FE00010\":{\"vr\":\"OW\",\"BulkDataURI\":\"http://h/x\"},\"x\":null,\"y\":-12.5e3}";

static void test_members(void)
{
    const char *want_keys[] = {"00080005", "00100010", "00186011", "00189182", "7FE00010", "x", "y"};
    const char *want_vals[] = {
        "{\"vr\":\"CS\",\"Value\":[\"ISO_IR 192\"]}",
        "{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Wang^Xiao \\\"}{[\"}]}",
        "{\"vr\":\"SQ\",\"Value\":[{\"00186012\":{\"vr\":\"US\",\"Value\":[1]}},{}]}",
        "{\"vr\":\"FD\",\"Value\":[40.185848236083984,-1e-3]}",
        "{\"vr\":\"OW\",\"BulkDataURI\":\"http://h/x\"}",
        "null",
        "-12.5e3",
    };
    size_t pos = 0, n = 0;
    struct json_member m;
    int r;
    while ((r = json_scan_next(k_obj, strlen(k_obj), &pos, &m)) == 1) {
        CHECK(n < 7);
        if (n >= 7)
            break;
        CHECK_INT_EQ(m.key_len, strlen(want_keys[n]));
        CHECK(!strncmp(m.key, want_keys[n], m.key_len));
        CHECK_INT_EQ(m.val_len, strlen(want_vals[n]));
        CHECK(!strncmp(m.val, want_vals[n], m.val_len));
        n++;
    }
    CHECK_INT_EQ(r, 0);
    CHECK_INT_EQ(n, 7);
    /* after the end it stays at the end */
    CHECK_INT_EQ(json_scan_next(k_obj, strlen(k_obj), &pos, &m), 0);
}

static void test_empty_and_bad(void)
{
    size_t pos = 0;
    struct json_member m;
    CHECK_INT_EQ(json_scan_next("{}", 2, &pos, &m), 0);
    pos = 0;
    CHECK_INT_EQ(json_scan_next(" { } ", 5, &pos, &m), 0);
    const char *bad[] = {"", "[]", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1 \"b\":2}", "\"s\"", "{\"a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pos = 0;
        int r;
        unsigned guard = 0;
        while ((r = json_scan_next(bad[i], strlen(bad[i]), &pos, &m)) == 1 && guard++ < 10)
            ;
        if (r != -EBADMSG)
            fprintf(stderr, "  input %zu: %d\n", i, r);
        CHECK_INT_EQ(r, -EBADMSG);
    }
}

/* Every prefix of the object: the walk ends (no read past the end, no
 * loop), each member returned lies within the prefix. */
static void test_prefixes(void)
{
    size_t len = strlen(k_obj);
    for (size_t cut = 0; cut < len; cut++) {
        char *t = malloc(cut ? cut : 1); /* exact size: ASan sees overreads */
        memcpy(t, k_obj, cut);
        size_t pos = 0;
        struct json_member m;
        int r;
        unsigned guard = 0;
        while ((r = json_scan_next(t, cut, &pos, &m)) == 1 && guard++ < 20) {
            CHECK(m.val + m.val_len <= t + cut);
            CHECK(m.key + m.key_len <= t + cut);
        }
        CHECK(r == 0 || r == -EBADMSG);
        CHECK(guard < 20);
        free(t);
    }
}

int main(void)
{
    RUN(test_members);
    RUN(test_empty_and_bad);
    RUN(test_prefixes);
    return check_summary();
}
