/* Unit tests for core/arena.c and core/buf.c. */
#include "core/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "core/buf.h"

static int hook_count;
static void hook(void *arg)
{
    hook_count += *(int *)arg;
}

static void test_alloc_and_align(void)
{
    struct arena *a = arena_new(0);
    CHECK(a != NULL);
    for (int i = 1; i < 5000; i += 37) {
        void *p = arena_alloc(a, (size_t)i);
        CHECK(p != NULL);
        CHECK_INT_EQ((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i);
    }
    void *big = arena_alloc(a, 100000);
    CHECK(big != NULL);
    memset(big, 1, 100000);
    CHECK_STR_EQ(arena_printf(a, "%d-%s", 42, "x"), "42-x");
    CHECK_STR_EQ(arena_strndup(a, "hello", 3), "hel");
    arena_free(a);
    arena_free(NULL);
}

static void test_limit(void)
{
    struct arena *a = arena_new(1000);
    CHECK(arena_alloc(a, 900) != NULL);
    CHECK(arena_alloc(a, 200) == NULL);
    CHECK(arena_alloc(a, SIZE_MAX - 3) == NULL);
    arena_free(a);
}

static void test_hooks(void)
{
    struct arena *a = arena_new(0);
    int one = 1, ten = 10;
    hook_count = 0;
    CHECK_INT_EQ(arena_on_release(a, hook, &one), 0);
    CHECK_INT_EQ(arena_on_release(a, hook, &ten), 0);
    arena_free(a);
    CHECK_INT_EQ(hook_count, 11);
}

static void test_buf(void)
{
    struct buf b = BUF_INIT;
    CHECK_INT_EQ(buf_puts(&b, "abc"), 0);
    CHECK_INT_EQ(buf_printf(&b, "%05d", 7), 0);
    CHECK_STR_EQ(b.data, "abc00007");
    buf_release(&b);
    buf_init(&b, 4);
    CHECK_INT_EQ(buf_puts(&b, "abcd"), 0);
    CHECK_INT_EQ(buf_putc(&b, 'e'), -E2BIG);
    CHECK_STR_EQ(b.data, "abcd");
    buf_release(&b);
    /* buf_printf formats in place when the text fits, grows otherwise, and
     * keeps the limit and the terminator when it cannot */
    buf_init(&b, 0);
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK_INT_EQ(buf_printf(&b, "<%s>", big), 0);
    CHECK_INT_EQ(b.len, 301);
    CHECK_INT_EQ(b.data[0], '<');
    CHECK_INT_EQ(b.data[300], '>');
    CHECK_INT_EQ(b.data[301], 0);
    CHECK_INT_EQ(buf_printf(&b, "%d", 42), 0);
    CHECK_STR_EQ(b.data + 301, "42");
    buf_release(&b);
    buf_init(&b, 6);
    CHECK_INT_EQ(buf_printf(&b, "%s", "abc"), 0);
    CHECK_INT_EQ(buf_printf(&b, "%s", "def"), 0);
    CHECK_STR_EQ(b.data, "abcdef");
    CHECK_INT_EQ(buf_printf(&b, "%s", "g"), -E2BIG);
    CHECK_STR_EQ(b.data, "abcdef");
    buf_release(&b);
    buf_init(&b, 8);
    CHECK_INT_EQ(buf_puts(&b, "ab"), 0);
    CHECK_INT_EQ(buf_printf(&b, "%s", "cdefghijk"), -E2BIG);
    CHECK_STR_EQ(b.data, "ab");
    CHECK_INT_EQ(b.len, 2);
    buf_release(&b);
}

static void test_buf_consume(void)
{
    struct buf b;
    buf_init(&b, 0);
    CHECK_INT_EQ(buf_puts(&b, "0123456789"), 0);
    buf_consume(&b, 4);
    CHECK_INT_EQ(b.len, 6);
    CHECK_STR_EQ(b.data, "456789");
    CHECK_INT_EQ(buf_puts(&b, "ab"), 0);
    CHECK_STR_EQ(b.data, "456789ab");
    buf_consume(&b, 8);
    CHECK_INT_EQ(b.len, 0);
    CHECK_STR_EQ(b.data, "");
    buf_consume(&b, 0);
    CHECK_INT_EQ(b.len, 0);
    buf_release(&b);
}

/* A large reservation gets what it needs (page-rounded), not the next power
 * of two: a 512 KiB frame plus its NUL must stay under malloc's 1 MiB mmap
 * threshold (server/main.c), or it is mapped and faulted on every request. */
static void test_buf_large_reserve(void)
{
    struct buf b;
    buf_init(&b, 0);
    CHECK_INT_EQ(buf_reserve(&b, 512 * 1024), 0);
    CHECK(b.cap >= 512 * 1024 + 1);
    CHECK(b.cap < 1024 * 1024);
    memset(b.data, 7, 512 * 1024);
    b.len = 512 * 1024;
    /* small appends afterwards still grow geometrically */
    size_t before = b.cap;
    CHECK_INT_EQ(before, 516 * 1024);
    for (int i = 0; i < 5000; i++)
        CHECK_INT_EQ(buf_putc(&b, 'x'), 0);
    CHECK_INT_EQ(b.cap, 2 * before);
    CHECK_INT_EQ(b.len, 512 * 1024 + 5000);
    CHECK_INT_EQ((unsigned char)b.data[0], 7);
    CHECK_INT_EQ(b.data[b.len - 1], 'x');
    CHECK_INT_EQ(b.data[b.len], 0);
    buf_release(&b);
    /* small buffers keep the doubling from 64 */
    buf_init(&b, 0);
    CHECK_INT_EQ(buf_puts(&b, "abc"), 0);
    CHECK_INT_EQ(b.cap, 64);
    buf_release(&b);
}

int main(void)
{
    RUN(test_alloc_and_align);
    RUN(test_limit);
    RUN(test_hooks);
    RUN(test_buf);
    RUN(test_buf_consume);
    RUN(test_buf_large_reserve);
    return check_summary();
}
