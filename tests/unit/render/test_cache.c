/* Unit tests for render/cache.c: copies out, lending, eviction while lent. */
#include "core/common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/buf.h"
#include "render/cache.h"

static void test_get_copies(void)
{
    struct render_cache *c = render_cache_new(1 << 20);
    render_cache_put(c, "k1", "hello", 5, "image/png");
    struct buf b;
    buf_init(&b, 0);
    char type[32];
    CHECK(render_cache_get(c, "k1", &b, type));
    CHECK_INT_EQ(b.len, 5);
    CHECK(memcmp(b.data, "hello", 5) == 0);
    CHECK_STR_EQ(type, "image/png");
    buf_release(&b);
    buf_init(&b, 0);
    CHECK(!render_cache_get(c, "nope", &b, type));
    CHECK_INT_EQ(b.len, 0);
    buf_release(&b);
    /* a buffer too small for the entry: no hit, nothing appended */
    buf_init(&b, 3);
    CHECK(!render_cache_get(c, "k1", &b, type));
    CHECK_INT_EQ(b.len, 0);
    buf_release(&b);
    uint64_t bytes, entries, hits, misses;
    render_cache_stats(c, &bytes, &entries, &hits, &misses);
    CHECK_INT_EQ(entries, 1);
    CHECK_INT_EQ(hits, 2);
    CHECK_INT_EQ(misses, 1);
    render_cache_free(c);
}

/* A lent entry's bytes stay valid after it is evicted, replaced, dropped
 * and even after the cache is freed, until it is returned (AddressSanitizer
 * and valgrind see any early free). */
static void test_lent_outlives_eviction(void)
{
    enum { N = 100 * 1024 };
    struct render_cache *c = render_cache_new(4 * N + 64); /* entries <= N + 16 */
    uint8_t *x = malloc(N), *y = malloc(N);
    memset(x, 'x', N);
    memset(y, 'y', N);
    render_cache_put(c, "a", x, N, "application/dicom+json");
    const void *data = NULL;
    size_t len = 0;
    char type[32];
    void *tok = render_cache_borrow(c, "a", &data, &len, type);
    CHECK(tok != NULL);
    CHECK_INT_EQ(len, N);
    CHECK_STR_EQ(type, "application/dicom+json");
    void *tok2 = render_cache_borrow(c, "a", &data, &len, type); /* two borrowers */
    CHECK(tok2 == tok);
    /* evicted: four more entries of the same size push "a" out */
    for (int i = 0; i < 4; i++) {
        char k[8];
        snprintf(k, sizeof(k), "b%d", i);
        render_cache_put(c, k, y, N, "t");
    }
    struct buf b;
    buf_init(&b, 0);
    CHECK(!render_cache_get(c, "a", &b, type));
    buf_release(&b);
    CHECK(memcmp(data, x, N) == 0);
    render_cache_return(tok);
    CHECK(memcmp(data, x, N) == 0); /* the second borrower still holds it */
    /* replaced under the same key while lent, then the cache freed */
    render_cache_put(c, "r", x, N, "t");
    void *tok3 = render_cache_borrow(c, "r", &data, &len, type);
    CHECK(tok3 != NULL);
    render_cache_put(c, "r", y, N, "t");
    render_cache_drop_prefix(c, "r");
    render_cache_free(c);
    CHECK(memcmp(data, x, N) == 0);
    render_cache_return(tok3);
    render_cache_return(tok2);
    render_cache_return(NULL);
    free(x);
    free(y);
}

static void test_off(void)
{
    struct render_cache *c = render_cache_new(0);
    render_cache_put(c, "k", "v", 1, "t");
    const void *data;
    size_t len;
    char type[32];
    CHECK(render_cache_borrow(c, "k", &data, &len, type) == NULL);
    CHECK(render_cache_borrow(NULL, "k", &data, &len, type) == NULL);
    render_cache_free(c);
}

int main(void)
{
    RUN(test_get_copies);
    RUN(test_lent_outlives_eviction);
    RUN(test_off);
    return check_summary();
}
