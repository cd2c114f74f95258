/*
 * check.h - the unit-test macros. A failed check prints both sides with the
 * file and line, counts the failure and continues; main() returns
 * check_summary(), which prints "N passed, N failed" and gives the exit code.
 *
 * Usage:
 *   static void test_x(void) { CHECK_INT_EQ(f(1), 2); CHECK_STR_EQ(s, "a"); }
 *   int main(void) { RUN(test_x); return check_summary(); }
 */
#ifndef YY_CHECK_H
#define YY_CHECK_H

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static unsigned check_n_pass __attribute__((unused)), check_n_fail __attribute__((unused));
static const char *check_current __attribute__((unused)) = "";

#define CHECK_FAIL_(...)                                                                   \
    do {                                                                                   \
        check_n_fail++;                                                                    \
        fprintf(stderr, "FAIL %s:%d [%s]: ", __FILE__, __LINE__, check_current);         \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
    } while (0)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond)                                                                          \
            check_n_pass++;                                                                \
        else                                                                               \
            CHECK_FAIL_("%s", #cond);                                                      \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                 \
    do {                                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
        if (check_a_ == check_b_)                                                          \
            check_n_pass++;                                                                \
        else                                                                               \
            CHECK_FAIL_("%s == %s: %lld != %lld", #a, #b, check_a_, check_b_);             \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                 \
    do {                                                                                   \
        const char *check_a_ = (a), *check_b_ = (b);                                       \
        if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0)                       \
            check_n_pass++;                                                                \
        else                                                                               \
            CHECK_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, check_a_ ? check_a_ : "(null)", \
                        check_b_ ? check_b_ : "(null)");                                   \
    } while (0)

#define CHECK_MEM_EQ(a, b, n)                                                              \
    do {                                                                                   \
        if (memcmp((a), (b), (n)) == 0)                                                    \
            check_n_pass++;                                                                \
        else                                                                               \
            CHECK_FAIL_("%s == %s (%zu bytes) differ", #a, #b, (size_t)(n));               \
    } while (0)

#define RUN(fn)                                                                            \
    do {                                                                                   \
        check_current = #fn;                                                               \
        unsigned check_before_ = check_n_fail;                                             \
        fn();                                                                              \
        fprintf(stderr, "%s %s\n", check_n_fail == check_before_ ? "ok  " : "FAIL", #fn);  \
    } while (0)

static inline int check_summary(void)
{
    printf("%u passed, %u failed\n", check_n_pass, check_n_fail);
    return check_n_fail ? 1 : 0;
}

/* Directory of the shared corpus: $YY_CORPUS or ../shared/corpus from the
 * source root (meson passes YY_CORPUS in the test environment). */
static inline const char *check_corpus_dir(void)
{
    const char *d = getenv("YY_CORPUS");
    return d && *d ? d : "../shared/corpus";
}

#endif
