/* Unit tests for http/mp_in.c.
 *
 * Every parse is checked by a collector that compares each callback against
 * the expected parts as it happens (headers at part_begin, bytes at
 * part_data), so a run over a 1 MiB body costs no copy.
 *
 * Environment: YY_TEST_EXHAUSTIVE=1 splits the big body at every position
 * (about 1M parses of 1 MiB: minutes); by default every position within
 * SPLIT_EDGE bytes of a structure (delimiters, headers, small parts, both
 * ends of the big part) is tried and the interior of the big part is
 * sampled. Under valgrind the amounts shrink.
 */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "http/mp_in.h"
#include "core/banned.h"

#define BOUNDARY "----YingyunBoundary7MA4YWxk"
#define BIG_LEN ((size_t)1 << 20)

static bool under_valgrind;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* ---- growable byte string for building bodies ---- */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void puts_(struct bytes *b, const char *s)
{
    put(b, s, strlen(s));
}

/* ---- expected parts and the checking collector ---- */

#define MAX_H 40

struct exp_part {
    const char *lines[MAX_H]; /* raw header lines, NULL-terminated */
    unsigned nh;              /* expected parsed headers */
    const char *names[MAX_H];
    const char *values[MAX_H];
    const char *content_type;
    const char *content_location;
    const uint8_t *data;
    size_t len;
};

struct coll {
    const struct exp_part *exp;
    unsigned nexp;
    unsigned idx; /* parts ended */
    unsigned begun;
    size_t off;
    bool in;
    bool ok;
    char msg[160];
    /* failure injection */
    int fail_rc;
    int fail_begin_part; /* 1-based part whose begin fails; 0 = never */
    int fail_data_part;
    unsigned calls_after_fail;
    bool failed;
};

static void coll_init(struct coll *c, const struct exp_part *exp, unsigned nexp)
{
    memset(c, 0, sizeof(*c));
    c->exp = exp;
    c->nexp = nexp;
    c->ok = true;
}

static void coll_err(struct coll *c, const char *what, unsigned part, size_t off)
{
    if (c->ok)
        snprintf(c->msg, sizeof(c->msg), "%s (part %u, offset %zu)", what, part, off);
    c->ok = false;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static int on_begin(void *ctx, const struct mp_part_headers *h)
{
    struct coll *c = ctx;
    if (c->failed)
        c->calls_after_fail++;
    c->begun++;
    if ((int)c->begun == c->fail_begin_part) {
        c->failed = true;
        return c->fail_rc;
    }
    if (c->in)
        coll_err(c, "begin inside a part", c->idx, 0);
    if (c->idx >= c->nexp) {
        coll_err(c, "too many parts", c->idx, 0);
        c->in = true;
        return 0;
    }
    const struct exp_part *e = &c->exp[c->idx];
    if (h->n != e->nh)
        coll_err(c, "header count", c->idx, h->n);
    for (unsigned i = 0; i < h->n && i < e->nh; i++)
        if (!str_eq(h->h[i].name, e->names[i]) || !str_eq(h->h[i].value, e->values[i]))
            coll_err(c, "header differs", c->idx, i);
    if (!str_eq(h->content_type, e->content_type))
        coll_err(c, "content_type", c->idx, 0);
    if (!str_eq(h->content_location, e->content_location))
        coll_err(c, "content_location", c->idx, 0);
    /* the pointers point into the header array */
    for (unsigned i = 0; i < h->n; i++) {
        if (h->content_type && strcmp(h->h[i].name, "content-type") == 0 &&
            h->content_type != h->h[i].value)
            coll_err(c, "content_type not into array", c->idx, i);
    }
    c->in = true;
    c->off = 0;
    return 0;
}

static int on_data(void *ctx, const uint8_t *d, size_t len)
{
    struct coll *c = ctx;
    if (c->failed)
        c->calls_after_fail++;
    if ((int)c->begun == c->fail_data_part) {
        c->failed = true;
        return c->fail_rc;
    }
    if (len == 0)
        coll_err(c, "empty part_data call", c->idx, c->off);
    if (!c->in || c->idx >= c->nexp) {
        coll_err(c, "data outside a part", c->idx, c->off);
        return 0;
    }
    const struct exp_part *e = &c->exp[c->idx];
    if (c->off + len > e->len)
        coll_err(c, "part too long", c->idx, c->off + len);
    else if (memcmp(e->data + c->off, d, len) != 0)
        coll_err(c, "data differs", c->idx, c->off);
    c->off += len;
    return 0;
}

static int on_end(void *ctx)
{
    struct coll *c = ctx;
    if (c->failed)
        c->calls_after_fail++;
    if (!c->in)
        coll_err(c, "end outside a part", c->idx, 0);
    else if (c->idx < c->nexp && c->off != c->exp[c->idx].len)
        coll_err(c, "part too short", c->idx, c->off);
    c->in = false;
    c->idx++;
    return 0;
}

static const struct mp_in_cb check_cb = {on_begin, on_data, on_end};

/* ---- body building ---- */

struct body_opts {
    const char *eol;      /* "\r\n" or "\n" */
    const char *preamble; /* NULL = none */
    const char *epilogue; /* NULL = none */
    const char *padding;  /* after each "--boundary" */
    bool close;           /* write the close delimiter */
};

static void build_body(struct bytes *b, const struct exp_part *parts, unsigned n,
                       const struct body_opts *o, size_t *part_starts)
{
    b->len = 0;
    if (o->preamble) {
        puts_(b, o->preamble);
        puts_(b, o->eol);
    }
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            puts_(b, o->eol);
        puts_(b, "--" BOUNDARY);
        if (o->padding)
            puts_(b, o->padding);
        puts_(b, o->eol);
        for (unsigned k = 0; parts[i].lines[k]; k++) {
            puts_(b, parts[i].lines[k]);
            puts_(b, o->eol);
        }
        puts_(b, o->eol);
        if (part_starts)
            part_starts[i] = b->len;
        put(b, parts[i].data, parts[i].len);
    }
    if (o->close) {
        puts_(b, o->eol);
        puts_(b, "--" BOUNDARY "--");
        if (o->padding)
            puts_(b, o->padding);
        if (o->epilogue) {
            puts_(b, o->eol);
            puts_(b, o->epilogue);
        }
    }
}

/* ---- feeding ---- */

enum feed_mode { FEED_WHOLE, FEED_SPLIT, FEED_BYTES, FEED_RANDOM, FEED_FIXED };

struct feed {
    enum feed_mode mode;
    size_t arg;    /* split position or fixed size */
    uint64_t seed; /* FEED_RANDOM */
};

/* Parses body with the given chunking; returns the first error or finish's
 * result. */
static int parse(const uint8_t *body, size_t len, const struct feed *f, struct coll *c,
                 size_t max_header_bytes)
{
    struct mp_in *m = mp_in_new(BOUNDARY, max_header_bytes, &check_cb, c);
    if (!m)
        return -ENOMEM;
    int r = 0;
    uint64_t s = f->seed | 1;
    size_t i = 0;
    if (f->mode == FEED_SPLIT) {
        r = mp_in_feed(m, body, f->arg);
        if (r == 0)
            r = mp_in_feed(m, body + f->arg, len - f->arg);
        i = len;
    }
    while (r == 0 && i < len) {
        size_t n = len - i;
        switch (f->mode) {
        case FEED_BYTES:
            n = 1;
            break;
        case FEED_FIXED:
            n = f->arg;
            break;
        case FEED_RANDOM: {
            /* log-uniform sizes 1 .. 128 KiB, sometimes 0 */
            uint64_t x = rng_next(&s);
            n = (size_t)((x >> 8) & ((1u << (x % 18)) - 1));
            break;
        }
        default:
            break;
        }
        if (n > len - i)
            n = len - i;
        r = mp_in_feed(m, body + i, n);
        i += n;
    }
    if (r == 0)
        r = mp_in_finish(m);
    if (r == 0 && mp_in_parts(m) != c->begun)
        coll_err(c, "mp_in_parts() differs", mp_in_parts(m), 0);
    mp_in_free(m);
    return r;
}

/* Parses and checks the result equals all expected parts. */
static bool parse_ok(const uint8_t *body, size_t len, const struct exp_part *exp, unsigned n,
                     const struct feed *f)
{
    struct coll c;
    coll_init(&c, exp, n);
    int r = parse(body, len, f, &c, 0);
    if (r == 0 && c.ok && c.idx == n && !c.in)
        return true;
    fprintf(stderr, "  parse (mode %d arg %zu seed %llu): r=%d ok=%d parts=%u/%u %s\n",
            (int)f->mode, f->arg, (unsigned long long)f->seed, r, c.ok, c.idx, n, c.msg);
    return false;
}

/* ---- the main 3-part body ---- */

static uint8_t *big;
static struct bytes bin;
static struct exp_part three[3];

static void make_three(void)
{
    /* part 1: binary content full of near-delimiters. It opens with a
     * boundary prefix (the body start counts as a line start) and never
     * contains "\n--" BOUNDARY. */
    static const char *near[] = {
        "x--" BOUNDARY "\r\n", /* whole boundary, not at a line start */
        "\r\n--",
        "\n-",
        "\r\r\n--",
        "--",
        "\r\n\r\n",
        "\r",
    };
    bin.len = 0;
    puts_(&bin, "------YingyunBound"); /* opens like a delimiter */
    for (unsigned r = 0; r < 3; r++) {
        for (unsigned i = 0; i < YY_ARRAY_LEN(near); i++) {
            puts_(&bin, near[i]);
            uint8_t x = (uint8_t)('X' + r);
            put(&bin, &x, 1);
        }
        /* every proper prefix of the delimiter, then a byte that breaks it */
        for (unsigned k = 0; k < sizeof(BOUNDARY) - 1; k++) {
            puts_(&bin, r == 1 ? "\n--" : "\r\n--");
            put(&bin, BOUNDARY, k);
            put(&bin, k % 2 ? "\0" : "\r", 1);
        }
        for (unsigned v = 0; v < 256; v++) {
            uint8_t x = (uint8_t)v;
            put(&bin, &x, 1);
        }
    }
    puts_(&bin, "--\r\n-"); /* ends just before the delimiter's CRLF */
    CHECK(memmem(bin.p, bin.len, "\n--" BOUNDARY, sizeof(BOUNDARY) + 2) == NULL);

    big = malloc(BIG_LEN);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BIG_LEN; i += 8) {
        uint64_t x = rng_next(&s);
        memcpy(big + i, &x, 8);
    }

    three[0] = (struct exp_part){
        .lines = {"Content-TYPE: application/dicom", "content-location:   http://x/1  ",
                  "X-Folded: a", "  b\t", "\tc"},
        .nh = 3,
        .names = {"content-type", "content-location", "x-folded"},
        .values = {"application/dicom", "http://x/1", "a  b\t\tc"},
        .content_type = "application/dicom",
        .content_location = "http://x/1",
        .data = bin.p,
        .len = bin.len,
    };
    three[1] = (struct exp_part){
        .lines = {"Content-Type: application/octet-stream"},
        .nh = 1,
        .names = {"content-type"},
        .values = {"application/octet-stream"},
        .content_type = "application/octet-stream",
        .data = (const uint8_t *)"",
        .len = 0,
    };
    three[2] = (struct exp_part){
        .lines = {"Content-Type:application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                  "Content-Length:  1048576  ", "Empty:"},
        .nh = 3,
        .names = {"content-type", "content-length", "empty"},
        .values = {"application/dicom; transfer-syntax=1.2.840.10008.1.2.1", "1048576", ""},
        .content_type = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
        .data = big,
        .len = BIG_LEN,
    };
}

static void check_all_feeds(const char *eol, size_t edge, size_t stride)
{
    struct body_opts o = {.eol = eol, .close = true};
    struct bytes b = {0};
    size_t starts[3];
    build_body(&b, three, 3, &o, starts);
    size_t big_start = starts[2], big_end = starts[2] + BIG_LEN;

    struct feed f = {FEED_WHOLE, 0, 0};
    CHECK(parse_ok(b.p, b.len, three, 3, &f));

    const char *ex = getenv("YY_TEST_EXHAUSTIVE");
    bool all = ex && *ex == '1';
    unsigned bad_splits = 0, n_splits = 0;
    f.mode = FEED_SPLIT;
    for (size_t s = 0; s <= b.len; s++) {
        if (!all && s > big_start + edge && s + edge < big_end) {
            size_t next = s + stride;
            if (next + edge < big_end) {
                s = next;
            } else {
                s = big_end - edge;
            }
        }
        f.arg = s;
        n_splits++;
        if (!parse_ok(b.p, b.len, three, 3, &f) && ++bad_splits > 5)
            break;
    }
    CHECK_INT_EQ(bad_splits, 0);
    fprintf(stderr, "  %s: %u split positions of %zu%s\n", eol[0] == '\r' ? "CRLF" : "LF", n_splits,
            b.len + 1, all ? " (exhaustive)" : "");

    f.mode = FEED_BYTES;
    CHECK(parse_ok(b.p, b.len, three, 3, &f));

    f.mode = FEED_RANDOM;
    for (uint64_t seed = 1; seed <= (under_valgrind ? 3u : 40u); seed++) {
        f.seed = seed * 7919;
        CHECK(parse_ok(b.p, b.len, three, 3, &f));
    }
    f.mode = FEED_FIXED;
    for (size_t sz = 2; sz < 200; sz += 7) {
        f.arg = sz;
        CHECK(parse_ok(b.p, b.len, three, 3, &f));
    }
    free(b.p);
}

static void test_three_parts_crlf(void)
{
    if (under_valgrind)
        check_all_feeds("\r\n", 200, 65521);
    else
        check_all_feeds("\r\n", 8192, 1021);
}

static void test_three_parts_bare_lf(void)
{
    if (under_valgrind)
        check_all_feeds("\n", 100, 262139);
    else
        check_all_feeds("\n", 2048, 4093);
}

/* Small bodies: every split and every 1-byte chunking. */
static void check_small(const uint8_t *body, size_t len, const struct exp_part *exp, unsigned n)
{
    struct feed f = {FEED_WHOLE, 0, 0};
    CHECK(parse_ok(body, len, exp, n, &f));
    f.mode = FEED_BYTES;
    CHECK(parse_ok(body, len, exp, n, &f));
    f.mode = FEED_SPLIT;
    bool all = true;
    for (size_t s = 0; s <= len; s++) {
        f.arg = s;
        all &= parse_ok(body, len, exp, n, &f);
    }
    CHECK(all);
}

static void check_small_str(const char *body, const struct exp_part *exp, unsigned n)
{
    check_small((const uint8_t *)body, strlen(body), exp, n);
}

static const struct exp_part one_a = {
    .lines = {"Content-Type: a/b"},
    .nh = 1,
    .names = {"content-type"},
    .values = {"a/b"},
    .content_type = "a/b",
    .data = (const uint8_t *)"hello",
    .len = 5,
};

static void test_preamble_epilogue(void)
{
    struct body_opts o = {
        .eol = "\r\n",
        .preamble = "Preamble. --" BOUNDARY " is not at a line start;\r\n"
                    "--" BOUNDARY "X is not a delimiter\r\n--"
                    "----Yingyun\r\n",
        .epilogue = "epilogue\r\n--" BOUNDARY "\r\nContent-Type: x/y\r\n\r\nignored\r\n--" BOUNDARY
                    "--\r\n",
        .close = true,
    };
    struct exp_part parts[2] = {one_a, one_a};
    struct bytes b = {0};
    build_body(&b, parts, 2, &o, NULL);
    check_small(b.p, b.len, parts, 2);
    o.eol = "\n";
    build_body(&b, parts, 2, &o, NULL);
    check_small(b.p, b.len, parts, 2);
    free(b.p);
}

static void test_transport_padding(void)
{
    struct body_opts o = {.eol = "\r\n", .padding = " \t  ", .close = true};
    struct exp_part parts[2] = {one_a, one_a};
    struct bytes b = {0};
    build_body(&b, parts, 2, &o, NULL);
    check_small(b.p, b.len, parts, 2);
    o.eol = "\n";
    build_body(&b, parts, 2, &o, NULL);
    check_small(b.p, b.len, parts, 2);
    free(b.p);
}

static const struct exp_part empty_noh = {.data = (const uint8_t *)"", .len = 0};

static void test_empty_and_zero_parts(void)
{
    /* zero parts: only the close delimiter */
    check_small_str("--" BOUNDARY "--", NULL, 0);
    check_small_str("preamble\r\n--" BOUNDARY "--\r\nepilogue", NULL, 0);
    /* a part with no headers and an empty body, in both RFC 2046 forms:
     * "[CRLF *OCTET]" present and absent */
    struct exp_part e3[3] = {empty_noh, empty_noh, one_a};
    check_small_str("--" BOUNDARY "\r\n\r\n\r\n--" BOUNDARY "\r\n\r\n--" BOUNDARY
                    "\r\nContent-Type: a/b\r\n\r\nhello\r\n--" BOUNDARY "--",
                    e3, 3);
    /* headers, body absent */
    struct exp_part h0 = one_a;
    h0.data = (const uint8_t *)"";
    h0.len = 0;
    check_small_str("--" BOUNDARY "\r\nContent-Type: a/b\r\n\r\n--" BOUNDARY "--", &h0, 1);
    check_small_str("--" BOUNDARY "\nContent-Type: a/b\n\n\n--" BOUNDARY "--\n", &h0, 1);
}

static void test_content_edge_bytes(void)
{
    /* content ending in CR and LF; a line that merely starts with the
     * boundary ("--BOUNDARYx") is content, as in Go's mime/multipart */
    struct exp_part p = one_a;
    static const char data[] = "\r\r\n\n--" BOUNDARY "x\r\n--" BOUNDARY "0\r\r";
    p.data = (const uint8_t *)data;
    p.len = sizeof(data) - 1;
    struct body_opts o = {.eol = "\r\n", .close = true};
    struct bytes b = {0};
    build_body(&b, &p, 1, &o, NULL);
    check_small(b.p, b.len, &p, 1);
    /* content that is exactly a line starting with the boundary */
    static const char d2[] = "--" BOUNDARY "ab";
    p.data = (const uint8_t *)d2;
    p.len = sizeof(d2) - 1;
    build_body(&b, &p, 1, &o, NULL);
    check_small(b.p, b.len, &p, 1);
    free(b.p);
}

/* Expects err from the feeds or finish, with why containing reason. */
static void check_bad(const char *body, size_t max_header_bytes, int err, const char *reason)
{
    size_t len = strlen(body);
    for (int mode = 0; mode < 2; mode++) {
        struct coll c;
        coll_init(&c, NULL, 0);
        c.ok = true;
        struct mp_in *m = mp_in_new(BOUNDARY, max_header_bytes, &(struct mp_in_cb){0}, &c);
        int r = 0;
        if (mode == 0) {
            r = mp_in_feed(m, (const uint8_t *)body, len);
        } else {
            for (size_t i = 0; i < len && r == 0; i++)
                r = mp_in_feed(m, (const uint8_t *)body + i, 1);
        }
        if (r == 0)
            r = mp_in_finish(m);
        CHECK_INT_EQ(r, err);
        if (!strstr(mp_in_error(m), reason))
            CHECK_STR_EQ(mp_in_error(m), reason);
        /* sticky */
        CHECK_INT_EQ(mp_in_feed(m, (const uint8_t *)"x", 1), err);
        CHECK_INT_EQ(mp_in_finish(m), err);
        mp_in_free(m);
    }
}

static void test_malformed(void)
{
    const char *ok_head = "--" BOUNDARY "\r\nContent-Type: a/b\r\n\r\n";
    char body[4096];

    /* missing close delimiter, ending in various places */
    check_bad("--" BOUNDARY "\r\nContent-Type: a/b\r\n\r\nhello", 0, -EBADMSG,
              "body ended inside a part");
    check_bad("--" BOUNDARY "\r\nContent-Type: a/b\r\n\r\nhello\r\n--" BOUNDARY, 0, -EBADMSG,
              "body ended inside a part");
    check_bad("--" BOUNDARY "\r\nContent-Type: a/b\r\n\r\nhello\r\n--" BOUNDARY "-", 0, -EBADMSG,
              "body ended inside a part");
    check_bad("--" BOUNDARY "\r\nContent-Type: a/b\r\n", 0, -EBADMSG, "body ended inside a part");
    check_bad("--" BOUNDARY "\r\n", 0, -EBADMSG, "body ended inside a part");

    /* wrong boundary: nothing found */
    check_bad("--OtherBoundary\r\nContent-Type: a/b\r\n\r\nhello\r\n--OtherBoundary--", 0, -EBADMSG,
              "no parts");
    check_bad("", 0, -EBADMSG, "no parts");

    /* header block too long: 64-byte limit; exactly 64 is fine */
    snprintf(body, sizeof(body), "--" BOUNDARY "\r\nX-Long: %0*d\r\n\r\nx\r\n--" BOUNDARY "--", 100,
             0);
    check_bad(body, 64, -EBADMSG, "header block too long");
    snprintf(body, sizeof(body), "--" BOUNDARY "\r\nX-Long: %0*d\r\n\r\n\r\n--" BOUNDARY "--",
             64 - 12, 0);
    {
        struct exp_part p = {.lines = {NULL}, .nh = 1, .names = {"x-long"}, .data = NULL};
        char v[64];
        snprintf(v, sizeof(v), "%0*d", 64 - 12, 0);
        p.values[0] = v;
        p.data = (const uint8_t *)"";
        struct coll c;
        coll_init(&c, &p, 1);
        struct feed f = {FEED_BYTES, 0, 0};
        CHECK_INT_EQ(parse((const uint8_t *)body, strlen(body), &f, &c, 64), 0);
        CHECK(c.ok);
        CHECK_INT_EQ(c.idx, 1);
    }
    /* header block without end never grows past the limit */
    {
        struct mp_in *m = mp_in_new(BOUNDARY, 0, &(struct mp_in_cb){0}, NULL);
        CHECK_INT_EQ(mp_in_feed(m, (const uint8_t *)ok_head, strlen(ok_head) - 2), 0);
        int r = 0;
        for (int i = 0; i < 20000 && r == 0; i++)
            r = mp_in_feed(m, (const uint8_t *)"X-A: b\r\n", 8);
        CHECK_INT_EQ(r, -EBADMSG);
        CHECK_STR_EQ(mp_in_error(m), "part header block too long");
        mp_in_free(m);
    }

    /* too many headers: MP_IN_MAX_HEADERS is fine, one more is not */
    for (int extra = 0; extra < 2; extra++) {
        int n = snprintf(body, sizeof(body), "--" BOUNDARY "\r\n");
        for (int i = 0; i < MP_IN_MAX_HEADERS + extra; i++)
            n += snprintf(body + n, sizeof(body) - (size_t)n, "X-H%d: %d\r\n", i, i);
        snprintf(body + n, sizeof(body) - (size_t)n, "\r\nx\r\n--" BOUNDARY "--");
        if (extra) {
            check_bad(body, 0, -EBADMSG, "too many part headers");
        } else {
            struct mp_in *m = mp_in_new(BOUNDARY, 0, &(struct mp_in_cb){0}, NULL);
            CHECK_INT_EQ(mp_in_feed(m, (const uint8_t *)body, strlen(body)), 0);
            CHECK_INT_EQ(mp_in_finish(m), 0);
            CHECK_INT_EQ(mp_in_parts(m), 1);
            mp_in_free(m);
        }
    }

    /* malformed headers and delimiter lines */
    check_bad("--" BOUNDARY "\r\nNo colon here\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG,
              "without ':'");
    check_bad("--" BOUNDARY "\r\n folded first\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG,
              "folded line without a header");
    check_bad("--" BOUNDARY "\r\n: v\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG,
              "empty part header name");
    check_bad("--" BOUNDARY "\r\nA\x01: v\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG,
              "invalid character");
    check_bad("--" BOUNDARY " x\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG, "junk after");
    check_bad("--" BOUNDARY "\rx\r\n\r\nx\r\n--" BOUNDARY "--", 0, -EBADMSG, "CR without LF");
    check_bad("--" BOUNDARY "\r\n\r\nx\r\n--" BOUNDARY "-x", 0, -EBADMSG, "malformed close");
    check_bad("--" BOUNDARY "\r\n--" BOUNDARY "--\r\n\r\n", 0, -EBADMSG, "without ':'");
    {
        /* NUL inside headers */
        static const char nul[] = "--" BOUNDARY "\r\nA: \0b\r\n\r\nx\r\n--" BOUNDARY "--";
        struct mp_in *m = mp_in_new(BOUNDARY, 0, &(struct mp_in_cb){0}, NULL);
        CHECK_INT_EQ(mp_in_feed(m, (const uint8_t *)nul, sizeof(nul) - 1), -EBADMSG);
        CHECK_STR_EQ(mp_in_error(m), "NUL byte in part headers");
        mp_in_free(m);
    }
}

static void test_callback_error(void)
{
    struct body_opts o = {.eol = "\r\n", .close = true};
    struct exp_part parts[3] = {one_a, one_a, one_a};
    struct bytes b = {0};
    build_body(&b, parts, 3, &o, NULL);
    for (int which = 0; which < 2; which++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct coll c;
            coll_init(&c, parts, 3);
            c.fail_rc = which ? -ENOSPC : -EIO;
            if (which)
                c.fail_begin_part = 2;
            else
                c.fail_data_part = 2;
            struct mp_in *m = mp_in_new(BOUNDARY, 0, &check_cb, &c);
            int r = 0;
            size_t step = bytewise ? 1 : b.len;
            for (size_t i = 0; i < b.len && r == 0; i += step)
                r = mp_in_feed(m, b.p + i, step);
            CHECK_INT_EQ(r, c.fail_rc);
            CHECK_STR_EQ(mp_in_error(m), "stopped by callback");
            CHECK_INT_EQ(mp_in_feed(m, b.p, b.len), c.fail_rc);
            CHECK_INT_EQ(mp_in_finish(m), c.fail_rc);
            CHECK_INT_EQ(c.calls_after_fail, 0);
            CHECK_INT_EQ(c.idx, 1);
            mp_in_free(m);
        }
    }
    free(b.p);
}

static void test_new_args(void)
{
    struct mp_in_cb cb = {0};
    char b71[72];
    memset(b71, 'a', 71);
    b71[71] = '\0';
    CHECK(mp_in_new("", 0, &cb, NULL) == NULL);
    CHECK(mp_in_new(b71, 0, &cb, NULL) == NULL);
    CHECK(mp_in_new("a\r\nb", 0, &cb, NULL) == NULL);
    CHECK(mp_in_new("ends with space ", 0, &cb, NULL) == NULL);
    CHECK(mp_in_new(NULL, 0, &cb, NULL) == NULL);
    b71[70] = '\0';
    struct mp_in *m = mp_in_new(b71, 0, &cb, NULL);
    CHECK(m != NULL);
    CHECK_STR_EQ(mp_in_error(m), "");
    CHECK_INT_EQ(mp_in_parts(m), 0);
    CHECK_INT_EQ(mp_in_feed(m, NULL, 0), 0);
    mp_in_free(m);
    m = mp_in_new("'()+_,-./:=? x", 0, &cb, NULL);
    CHECK(m != NULL);
    mp_in_free(m);
    mp_in_free(NULL);
}

/* ---- throughput (printed, not asserted) ---- */

struct sink {
    size_t bytes;
    unsigned parts;
};

static int sink_data(void *ctx, const uint8_t *d, size_t len)
{
    struct sink *s = ctx;
    (void)d;
    s->bytes += len;
    return 0;
}

static int sink_end(void *ctx)
{
    ((struct sink *)ctx)->parts++;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_throughput(void)
{
    const size_t seg_data = (size_t)4 << 20, chunk = (size_t)64 << 10;
    const size_t total = under_valgrind ? (size_t)8 << 20 : (size_t)256 << 20;
    const unsigned nseg = (unsigned)(total / seg_data);
    static const char head[] = "\r\n--" BOUNDARY "\r\nContent-Type: application/dicom\r\n\r\n";
    size_t hl = sizeof(head) - 1;
    uint8_t *seg = malloc(hl + seg_data);
    memcpy(seg, head, hl);
    uint64_t s = 42;
    for (size_t i = 0; i < seg_data; i += 8) {
        uint64_t x = rng_next(&s);
        memcpy(seg + hl + i, &x, 8);
    }
    struct sink sk = {0};
    struct mp_in_cb cb = {NULL, sink_data, sink_end};
    struct mp_in *m = mp_in_new(BOUNDARY, 0, &cb, &sk);
    int r = 0;
    size_t fed = 0;
    double t0 = now_s();
    for (unsigned k = 0; k < nseg && r == 0; k++) {
        for (size_t i = 0; i < hl + seg_data && r == 0; i += chunk) {
            size_t n = hl + seg_data - i < chunk ? hl + seg_data - i : chunk;
            r = mp_in_feed(m, seg + i, n);
            fed += n;
        }
    }
    static const char close[] = "\r\n--" BOUNDARY "--\r\n";
    if (r == 0)
        r = mp_in_feed(m, (const uint8_t *)close, sizeof(close) - 1);
    if (r == 0)
        r = mp_in_finish(m);
    double dt = now_s() - t0;
    CHECK_INT_EQ(r, 0);
    CHECK_INT_EQ(sk.parts, nseg);
    CHECK_INT_EQ(sk.bytes, (size_t)nseg * seg_data);
    printf("mp_in throughput: %zu MiB in 64 KiB chunks, %.3f s, %.0f MB/s%s\n", fed >> 20, dt,
           (double)fed / dt / 1e6, under_valgrind ? " (valgrind)" : "");
    mp_in_free(m);
    free(seg);
}

int main(void)
{
    const char *pre = getenv("LD_PRELOAD");
    under_valgrind = pre && strstr(pre, "vgpreload");
    make_three();
    RUN(test_new_args);
    RUN(test_three_parts_crlf);
    RUN(test_three_parts_bare_lf);
    RUN(test_preamble_epilogue);
    RUN(test_transport_padding);
    RUN(test_empty_and_zero_parts);
    RUN(test_content_edge_bytes);
    RUN(test_malformed);
    RUN(test_callback_error);
    RUN(test_throughput);
    free(big);
    free(bin.p);
    return check_summary();
}
