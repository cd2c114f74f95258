/* Unit tests for http/mime.c. */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "core/arena.h"
#include "http/mime.h"
#include "core/banned.h"

static struct arena *A;

static void test_content_type(void)
{
    struct mime_type t;
    CHECK_INT_EQ(
        mime_parse(A, "Multipart/Related; Type=\"application/dicom+xml\"; boundary=abc", &t), 0);
    CHECK_STR_EQ(t.type, "multipart");
    CHECK_STR_EQ(t.subtype, "related");
    CHECK_INT_EQ(t.n_params, 2);
    CHECK_STR_EQ(t.params[0].name, "type");
    CHECK_STR_EQ(t.params[0].value, "application/dicom+xml");
    CHECK_STR_EQ(t.params[1].name, "boundary");
    CHECK_STR_EQ(mime_param(&t, "boundary"), "abc");
    CHECK_STR_EQ(mime_param(&t, "TYPE"), "application/dicom+xml");
    CHECK(mime_param(&t, "charset") == NULL);
    CHECK(t.q == 1.0);

    /* OWS around ';', empty parameters, values keep their case */
    CHECK_INT_EQ(mime_parse(A, " \tapplication/DICOM \t;\t; charset=UTF-8 ;", &t), 0);
    CHECK_STR_EQ(t.subtype, "dicom");
    CHECK_INT_EQ(t.n_params, 1);
    CHECK_STR_EQ(mime_param(&t, "charset"), "UTF-8");

    /* quoted-string escapes, commas and semicolons inside quotes */
    CHECK_INT_EQ(mime_parse(A, "multipart/related; boundary=\"a\\\"b\\\\c;d,e f\"", &t), 0);
    CHECK_STR_EQ(mime_param(&t, "boundary"), "a\"b\\c;d,e f");
    CHECK_INT_EQ(mime_parse(A, "a/b; x=\"\"", &t), 0);
    CHECK_STR_EQ(mime_param(&t, "x"), "");

    /* a Content-Type's unquoted boundary may hold bchars that are not tokens */
    CHECK_INT_EQ(mime_parse(A, "multipart/related; boundary=a,b:c=d?(e)", &t), 0);
    CHECK_STR_EQ(mime_param(&t, "boundary"), "a,b:c=d?(e)");

    /* whitespace around '=' tolerated */
    CHECK_INT_EQ(mime_parse(A, "a/b; type = \"x/y\"", &t), 0);
    CHECK_STR_EQ(mime_param(&t, "type"), "x/y");

    /* malformed */
    static const char *bad[] = {
        "",
        "   ",
        "application",
        "application/",
        "/dicom",
        "application /dicom",
        "application/ dicom",
        "a/b c",
        "a/b; x",
        "a/b; x=",
        "a/b; =y",
        "a/b; x=\"unterminated",
        "a/b; x=\"bad\\",
        "a/b; x=\"ctl\x01\"",
        "a/b; x=\"q\" trailing",
        "a/b; q=2",
        "a/b; q=0.1234",
        "a/b; q=1.001",
        "a/b; q=.5",
        "a/b; q=",
        "a/b; q=-0",
        "a@b/c",
        "*/json",
        "a/b; x=y\"z",
    };
    for (unsigned i = 0; i < YY_ARRAY_LEN(bad); i++) {
        int r = mime_parse(A, bad[i], &t);
        if (r != -EBADMSG)
            fprintf(stderr, "  accepted: '%s'\n", bad[i]);
        CHECK_INT_EQ(r, -EBADMSG);
    }
    CHECK_INT_EQ(mime_parse(A, NULL, &t), -EBADMSG);

    /* MIME_MAX_PARAMS and one more */
    CHECK_INT_EQ(mime_parse(A, "a/b;p1=1;p2=2;p3=3;p4=4;p5=5;p6=6;p7=7;p8=8", &t), 0);
    CHECK_INT_EQ(t.n_params, 8);
    CHECK_INT_EQ(mime_parse(A, "a/b;p1=1;p2=2;p3=3;p4=4;p5=5;p6=6;p7=7;p8=8;p9=9", &t), -EBADMSG);
}

static void test_q(void)
{
    static const struct {
        const char *s;
        double q;
    } ok[] = {
        {"a/b;q=0", 0.0},       {"a/b;q=0.", 0.0},      {"a/b;q=0.5", 0.5},
        {"a/b;q=0.123", 0.123}, {"a/b;q=1", 1.0},       {"a/b;q=1.000", 1.0},
        {"a/b;Q=0.01", 0.01},   {"a/b;q=0.001", 0.001}, {"a/b ; q=0.9 ", 0.9},
    };
    struct mime_type t;
    for (unsigned i = 0; i < YY_ARRAY_LEN(ok); i++) {
        CHECK_INT_EQ(mime_parse(A, ok[i].s, &t), 0);
        CHECK(t.q > ok[i].q - 1e-9 && t.q < ok[i].q + 1e-9);
        CHECK_INT_EQ(t.n_params, 0);
    }
}

static void test_accept_dicomweb(void)
{
    struct mime_accept acc;
    const char *h = "multipart/related; type=\"application/dicom\"; "
                    "transfer-syntax=1.2.840.10008.1.2.1, multipart/related; "
                    "type=application/octet-stream; transfer-syntax=*;q=0.9, */*;q=0.1";
    CHECK_INT_EQ(mime_parse_accept(A, h, &acc), 0);
    CHECK_INT_EQ(acc.n, 3);
    const struct mime_type *r0 = &acc.ranges[0], *r1 = &acc.ranges[1], *r2 = &acc.ranges[2];
    CHECK_STR_EQ(r0->type, "multipart");
    CHECK_STR_EQ(r0->subtype, "related");
    CHECK_STR_EQ(mime_param(r0, "type"), "application/dicom");
    CHECK_STR_EQ(mime_param(r0, "transfer-syntax"), "1.2.840.10008.1.2.1");
    CHECK(r0->q == 1.0);
    CHECK_STR_EQ(mime_param(r1, "type"), "application/octet-stream");
    CHECK_STR_EQ(mime_param(r1, "transfer-syntax"), "*");
    CHECK_INT_EQ(r1->n_params, 2);
    CHECK(r1->q > 0.8999 && r1->q < 0.9001);
    CHECK_STR_EQ(r2->type, "*");
    CHECK_STR_EQ(r2->subtype, "*");
    CHECK_INT_EQ(r2->n_params, 0);
    CHECK(r2->q > 0.0999 && r2->q < 0.1001);

    CHECK(mime_matches(r0, "Multipart", "RELATED"));
    CHECK(!mime_matches(r0, "application", "dicom"));
    CHECK(mime_matches(r2, "application", "dicom"));

    /* a quoted value may contain commas; whitespace and empty elements */
    h = " ,application/dicom+json ;q=0.5 ,, multipart/related; type=\"a,b\";q=0 ,\t";
    CHECK_INT_EQ(mime_parse_accept(A, h, &acc), 0);
    CHECK_INT_EQ(acc.n, 2);
    CHECK_STR_EQ(acc.ranges[0].subtype, "dicom+json");
    CHECK(acc.ranges[0].q == 0.5);
    CHECK_STR_EQ(mime_param(&acc.ranges[1], "type"), "a,b");
    CHECK(acc.ranges[1].q == 0.0);

    /* a subtype wildcard range */
    CHECK_INT_EQ(mime_parse_accept(A, "image/*", &acc), 0);
    CHECK(mime_matches(&acc.ranges[0], "image", "jpeg"));
    CHECK(!mime_matches(&acc.ranges[0], "text", "jpeg"));
}

static void test_accept_empty_and_errors(void)
{
    struct mime_accept acc;
    static const char *any[] = {NULL, "", "  ", " , ,"};
    for (unsigned i = 0; i < YY_ARRAY_LEN(any); i++) {
        CHECK_INT_EQ(mime_parse_accept(A, any[i], &acc), 0);
        CHECK_INT_EQ(acc.n, 1);
        CHECK_STR_EQ(acc.ranges[0].type, "*");
        CHECK_STR_EQ(acc.ranges[0].subtype, "*");
        CHECK(acc.ranges[0].q == 1.0);
    }
    static const char *bad[] = {
        "application/dicom, text",
        "application/dicom;q=abc",
        "application/dicom;q=1.5, */*",
        "a/b; type=\"x, c/d",
        "a/b c/d",
        "*/dicom",
    };
    for (unsigned i = 0; i < YY_ARRAY_LEN(bad); i++)
        CHECK_INT_EQ(mime_parse_accept(A, bad[i], &acc), -EBADMSG);

    char big[1024];
    size_t n = 0;
    for (int i = 0; i < MIME_MAX_RANGES; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%sa/b%d", i ? "," : "", i);
    CHECK_INT_EQ(mime_parse_accept(A, big, &acc), 0);
    CHECK_INT_EQ(acc.n, MIME_MAX_RANGES);
    snprintf(big + n, sizeof(big) - n, ",x/y");
    CHECK_INT_EQ(mime_parse_accept(A, big, &acc), -E2BIG);
}

/* Fault injection: every arena limit below what a parse needs gives
 * -ENOMEM (never a crash or a different error); arena_free releases all. */
static void test_enomem(void)
{
    const char *h = "multipart/related; type=\"application/dicom\"; "
                    "transfer-syntax=1.2.840.10008.1.2.1, */*;q=0.1";
    struct mime_accept acc;
    bool seen_ok = false;
    for (size_t lim = 16; lim < 4096 && !seen_ok; lim += 16) {
        struct arena *a = arena_new(lim);
        int r = mime_parse_accept(a, h, &acc);
        if (r == 0)
            seen_ok = true;
        else
            CHECK_INT_EQ(r, -ENOMEM);
        arena_free(a);
    }
    CHECK(seen_ok);
}

int main(void)
{
    A = arena_new(0);
    RUN(test_content_type);
    RUN(test_q);
    RUN(test_accept_dicomweb);
    RUN(test_accept_empty_and_errors);
    RUN(test_enomem);
    arena_free(A);
    return check_summary();
}
