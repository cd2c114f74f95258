/* Unit tests for http/query.c. */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "core/arena.h"
#include "http/query.h"
#include "core/banned.h"

static struct arena *A;

static void test_decode(void)
{
    size_t n = 99;
    CHECK_STR_EQ(query_decode(A, "a%20b+c%2B%2b", 13, true, &n), "a b c++");
    CHECK_INT_EQ(n, 7);
    CHECK_STR_EQ(query_decode(A, "a+b", 3, false, NULL), "a+b");
    CHECK_STR_EQ(query_decode(A, "%C3%A9%e2%82%AC", 15, false, &n), "\xc3\xa9\xe2\x82\xac");
    CHECK_INT_EQ(n, 5);
    CHECK_STR_EQ(query_decode(A, "", 0, true, &n), "");
    CHECK_INT_EQ(n, 0);
    /* only len bytes are read */
    CHECK_STR_EQ(query_decode(A, "ab%41%zz", 5, true, NULL), "abA");
    CHECK(query_decode(A, "ab%41%zz", 4, true, NULL) == NULL);
    CHECK_STR_EQ(query_decode(A, "%2541", 5, true, NULL), "%41");

    static const char *bad[] = {"%", "%4", "%G1", "%1G", "a%0", "%00", "x%00y", "%%41", "%-1"};
    for (unsigned i = 0; i < YY_ARRAY_LEN(bad); i++)
        CHECK(query_decode(A, bad[i], strlen(bad[i]), true, NULL) == NULL);
    CHECK(query_decode(A, "a\0b", 3, true, NULL) == NULL);
}

static void test_parse(void)
{
    struct query q;
    const char *bad_key = "unset";
    CHECK_INT_EQ(query_parse(A,
                             "PatientName=DOE%5EJOHN*&limit=10&&includefield=00080020"
                             "&includefield=StudyDescription&fuzzymatching&=v&k=&a=b=c"
                             "&x+y=1+2&",
                             &q, &bad_key),
                 0);
    CHECK(bad_key == NULL);
    CHECK_INT_EQ(q.n, 9);
    CHECK_STR_EQ(q.p[0].key, "PatientName");
    CHECK_STR_EQ(q.p[0].value, "DOE^JOHN*");
    CHECK_STR_EQ(q.p[1].key, "limit");
    CHECK_STR_EQ(q.p[2].key, "includefield");
    CHECK_STR_EQ(q.p[2].value, "00080020");
    CHECK_STR_EQ(q.p[3].key, "includefield");
    CHECK_STR_EQ(q.p[3].value, "StudyDescription");
    CHECK_STR_EQ(q.p[4].key, "fuzzymatching");
    CHECK_STR_EQ(q.p[4].value, "");
    CHECK_STR_EQ(q.p[5].key, "");
    CHECK_STR_EQ(q.p[5].value, "v");
    CHECK_STR_EQ(q.p[6].key, "k");
    CHECK_STR_EQ(q.p[6].value, "");
    CHECK_STR_EQ(q.p[7].value, "b=c");
    CHECK_STR_EQ(q.p[8].key, "x y");
    CHECK_STR_EQ(q.p[8].value, "1 2");

    CHECK_STR_EQ(query_get(&q, "includefield"), "00080020");
    CHECK_STR_EQ(query_get(&q, "limit"), "10");
    CHECK(query_get(&q, "Limit") == NULL);
    CHECK(query_get(&q, "nope") == NULL);

    CHECK_INT_EQ(query_parse(A, "", &q, NULL), 0);
    CHECK_INT_EQ(q.n, 0);
    CHECK_INT_EQ(query_parse(A, NULL, &q, NULL), 0);
    CHECK_INT_EQ(q.n, 0);
    CHECK_INT_EQ(query_parse(A, "&&&", &q, NULL), 0);
    CHECK_INT_EQ(q.n, 0);
}

static void test_parse_errors(void)
{
    struct query q;
    const char *bad_key = NULL;
    CHECK_INT_EQ(query_parse(A, "a=1&Patient%ZZName=x&b=2", &q, &bad_key), -EBADMSG);
    CHECK_STR_EQ(bad_key, "Patient%ZZName");
    CHECK_INT_EQ(query_parse(A, "a=1&StudyDate=2020%", &q, &bad_key), -EBADMSG);
    CHECK_STR_EQ(bad_key, "StudyDate");
    CHECK_INT_EQ(query_parse(A, "k=%00", &q, &bad_key), -EBADMSG);
    CHECK_STR_EQ(bad_key, "k");
    CHECK_INT_EQ(query_parse(A, "k=%00", &q, NULL), -EBADMSG);

    /* QUERY_MAX_PARAMS is fine, one more is -E2BIG */
    size_t cap = (QUERY_MAX_PARAMS + 2) * 16;
    char *s = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < QUERY_MAX_PARAMS; i++)
        n += (size_t)snprintf(s + n, cap - n, "%sk%d=%d", i ? "&" : "", i, i);
    CHECK_INT_EQ(query_parse(A, s, &q, NULL), 0);
    CHECK_INT_EQ(q.n, QUERY_MAX_PARAMS);
    CHECK_STR_EQ(q.p[QUERY_MAX_PARAMS - 1].value, "255");
    snprintf(s + n, cap - n, "&&z");
    CHECK_INT_EQ(query_parse(A, s, &q, NULL), -E2BIG);
    free(s);
}

static void test_enomem(void)
{
    const char *raw = "PatientName=DOE%5EJOHN*&limit=10&includefield=00080020&fuzzymatching";
    struct query q;
    bool seen_ok = false;
    for (size_t lim = 16; lim < 4096 && !seen_ok; lim += 16) {
        struct arena *a = arena_new(lim);
        int r = query_parse(a, raw, &q, NULL);
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
    RUN(test_decode);
    RUN(test_parse);
    RUN(test_parse_errors);
    RUN(test_enomem);
    arena_free(A);
    return check_summary();
}
