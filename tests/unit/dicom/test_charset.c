/*
 * Unit tests for dicom/charset.c: every case of tests/data/charset_cases.tsv
 * (the corpus charset files decoded by pydicom, plus hand-written cases; see
 * tools/gen_charset_cases.py) byte for byte, then charset_parse and
 * robustness on hostile input.
 */
#include "core/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/buf.h"
#include "dicom/charset.h"
#include "dicom/vr.h"
#include "core/banned.h"

/* Decodes hex text s[0..n) into out (malloc'ed). 0 or -EBADMSG. */
static int unhex(const char *s, size_t n, uint8_t **out, size_t *len)
{
    if (n % 2)
        return -EBADMSG;
    uint8_t *p = malloc(n / 2 + 1);
    if (!p)
        return -ENOMEM;
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        char pair[3] = {s[i], s[i + 1], '\0'};
        if (sscanf(pair, "%2x", &v) != 1) {
            free(p);
            return -EBADMSG;
        }
        p[i / 2] = (uint8_t)v;
    }
    *out = p;
    *len = n / 2;
    return 0;
}

static void print_hex(const char *label, const void *data, size_t len)
{
    const uint8_t *p = data;
    fprintf(stderr, "  %s: ", label);
    for (size_t i = 0; i < len; i++)
        fprintf(stderr, "%02x", p[i]);
    fputc('\n', stderr);
}

/* Splits line into at most max tab-separated fields (in place). */
static unsigned split_tabs(char *line, char **field, size_t *flen, unsigned max)
{
    unsigned n = 0;
    char *p = line;
    while (n < max) {
        char *t = strchr(p, '\t');
        field[n] = p;
        flen[n] = t ? (size_t)(t - p) : strlen(p);
        n++;
        if (!t)
            break;
        p = t + 1;
    }
    return n;
}

/* One TSV case. Returns true when our output equals the expected bytes. */
static bool run_case(char **f, size_t *fl)
{
    uint8_t *cs_raw = NULL, *raw = NULL, *want = NULL;
    size_t cs_len = 0, raw_len = 0, want_len = 0;
    struct buf out = BUF_INIT;
    bool ok = false;
    char vr_name_[3] = {0};

    if (unhex(f[1], fl[1], &cs_raw, &cs_len) < 0 || unhex(f[3], fl[3], &raw, &raw_len) < 0 ||
        unhex(f[4], fl[4], &want, &want_len) < 0 || fl[2] != 2) {
        CHECK_FAIL_("malformed line for %.*s", (int)fl[0], f[0]);
        goto out;
    }
    memcpy(vr_name_, f[2], 2);
    uint16_t vr = vr_from_name(vr_name_);
    struct charset cs;
    CHECK_INT_EQ(charset_parse((const char *)cs_raw, cs_len, &cs, NULL), 0);
    /* Trailing padding is not part of the value (PS3.5 6.2); pydicom strips it. */
    while (raw_len > 0 && (raw[raw_len - 1] == ' ' || raw[raw_len - 1] == '\0'))
        raw_len--;
    int r = charset_to_utf8(&cs, raw, raw_len, vr, &out);
    if (r == 0 && out.len == want_len && (want_len == 0 || memcmp(out.data, want, want_len) == 0)) {
        ok = true;
        check_n_pass++;
    } else {
        CHECK_FAIL_("case %.*s (%s, %.*s): r=%d", (int)fl[0], f[0], vr_name_, (int)fl[1], f[1],
                    r);
        print_hex("raw ", raw, raw_len);
        print_hex("want", want, want_len);
        print_hex("got ", out.data, out.len);
    }
out:
    buf_release(&out);
    free(cs_raw);
    free(raw);
    free(want);
    return ok;
}

static void test_cases_file(void)
{
    const char *root = getenv("YY_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/data/charset_cases.tsv", root && *root ? root : ".");
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    if (!fp) {
        fprintf(stderr, "  cannot open %s\n", path);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned n_cases = 0, n_ok = 0, n_files = 0;
    char last_file[256] = "";
    while ((n = getline(&line, &cap, fp)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *f[6];
        size_t fl[6];
        if (split_tabs(line, f, fl, 6) < 5) {
            CHECK_FAIL_("short line: %s", line);
            continue;
        }
        n_cases++;
        n_ok += run_case(f, fl);
        if (strncmp(f[0], "hand:", 5) != 0 &&
            (strlen(last_file) != fl[0] || memcmp(last_file, f[0], fl[0]) != 0)) {
            n_files++;
            snprintf(last_file, sizeof(last_file), "%.*s", (int)fl[0], f[0]);
        }
    }
    free(line);
    fclose(fp);
    fprintf(stderr, "  %u/%u cases match, from %u corpus files\n", n_ok, n_cases, n_files);
    CHECK(n_cases >= 150);
    CHECK_INT_EQ(n_files, 13);
}

/* Converts a C string with charset value cs_value and VR vr. Returns the
 * UTF-8 (static buffer, for CHECK_STR_EQ). */
static const char *conv(const char *cs_value, uint16_t vr, const char *in)
{
    static char result[1024];
    struct charset cs;
    struct buf out = BUF_INIT;
    charset_parse(cs_value, strlen(cs_value), &cs, NULL);
    int r = charset_to_utf8(&cs, (const uint8_t *)in, strlen(in), vr, &out);
    snprintf(result, sizeof(result), "%s", r == 0 && out.data ? out.data : "(error)");
    buf_release(&out);
    return result;
}

static void test_parse(void)
{
    struct charset cs;
    unsigned unknown = 99;

    CHECK_INT_EQ(charset_parse("\\ISO 2022 IR 87", 15, &cs, &unknown), 0);
    CHECK_INT_EQ(cs.n_terms, 2);
    CHECK(cs.iso2022);
    CHECK_INT_EQ(unknown, 0);
    struct charset def;
    charset_default(&def);
    CHECK_INT_EQ(cs.terms[0], def.terms[0]); /* empty value 1 = ISO_IR 6 */
    CHECK(cs.terms[1] != def.terms[0]);

    /* Padding and surrounding spaces. */
    CHECK_INT_EQ(charset_parse("ISO_IR 100 ", 11, &cs, &unknown), 0);
    CHECK_INT_EQ(cs.n_terms, 1);
    CHECK(!cs.iso2022);
    CHECK_INT_EQ(unknown, 0);
    struct charset cs2;
    charset_parse("ISO_IR 100", 10, &cs2, NULL);
    CHECK_INT_EQ(cs.terms[0], cs2.terms[0]);
    charset_parse("ISO_IR 100\0", 11, &cs2, NULL);
    CHECK_INT_EQ(cs.terms[0], cs2.terms[0]);
    charset_parse(" ISO 2022 IR 13 \\ ISO 2022 IR 87 ", 34, &cs2, &unknown);
    CHECK_INT_EQ(cs2.n_terms, 2);
    CHECK_INT_EQ(unknown, 0);
    CHECK(cs2.iso2022);

    /* Unknown terms degrade to ISO_IR 6 and are counted. */
    CHECK_INT_EQ(charset_parse("ISO_IR 999\\KOI8-R", 17, &cs, &unknown), 0);
    CHECK_INT_EQ(unknown, 2);
    CHECK_INT_EQ(cs.n_terms, 2);
    CHECK_INT_EQ(cs.terms[0], def.terms[0]);
    CHECK_INT_EQ(charset_parse("ISO_IR 100", 10, &cs, NULL), 0); /* n_unknown may be NULL */

    /* Misspellings pydicom also accepts. */
    CHECK_INT_EQ(charset_parse("ISO IR 100", 10, &cs, &unknown), 0);
    CHECK_INT_EQ(unknown, 0);
    charset_parse("ISO_IR 100", 10, &cs2, NULL);
    CHECK_INT_EQ(cs.terms[0], cs2.terms[0]);
    charset_parse("ISO-2022-IR-87", 14, &cs, &unknown);
    CHECK_INT_EQ(unknown, 0);
    CHECK(cs.iso2022);

    /* Empty, NULL, and more terms than fit. */
    CHECK_INT_EQ(charset_parse("", 0, &cs, &unknown), 0);
    CHECK_INT_EQ(cs.n_terms, 1);
    CHECK_INT_EQ(cs.terms[0], def.terms[0]);
    CHECK_INT_EQ(charset_parse(NULL, 5, &cs, &unknown), 0);
    CHECK_INT_EQ(cs.n_terms, 1);
    const char *many = "\\ISO 2022 IR 100\\ISO 2022 IR 101\\ISO 2022 IR 109\\ISO 2022 IR 110"
                       "\\ISO 2022 IR 144\\ISO 2022 IR 127\\ISO 2022 IR 126\\ISO 2022 IR 138"
                       "\\ISO 2022 IR 148";
    CHECK_INT_EQ(charset_parse(many, strlen(many), &cs, &unknown), 0);
    CHECK_INT_EQ(cs.n_terms, CHARSET_MAX_TERMS);

    /* charset_is_utf8 */
    CHECK(charset_is_utf8(&def));
    charset_parse("ISO_IR 192", 10, &cs, NULL);
    CHECK(charset_is_utf8(&cs));
    charset_parse("ISO_IR 100", 10, &cs, NULL);
    CHECK(!charset_is_utf8(&cs));
    charset_parse("\\ISO 2022 IR 87", 15, &cs, NULL);
    CHECK(!charset_is_utf8(&cs));
    charset_parse("GB18030", 7, &cs, NULL);
    CHECK(!charset_is_utf8(&cs));
}

static void test_conversions(void)
{
    CHECK_STR_EQ(conv("", VR_LO, "plain"), "plain");
    CHECK_STR_EQ(conv("ISO_IR 100", VR_PN, "Buc^J\xe9r\xf4me"), "Buc^J\xc3\xa9r\xc3\xb4me");
    CHECK_STR_EQ(conv("ISO_IR 144", VR_LO, "\xbb\xde\xea"), "\xd0\x9b\xd0\xbe\xd1\x8a");
    /* Escapes are not honoured without an ISO 2022 term: ESC is a control. */
    CHECK_STR_EQ(conv("ISO_IR 100", VR_LO, "a\x1b(Bb"), "a\x1b(Bb");
    /* A space in a 94x94 G0 set stays a space; the set stays designated. */
    CHECK_STR_EQ(conv("\\ISO 2022 IR 87", VR_LO, "\x1b$B;3 ED\x1b(B"),
                 "\xe5\xb1\xb1 \xe7\x94\xb0");
    /* PN groups: back in ASCII, '=' is the group delimiter and resets. */
    CHECK_STR_EQ(conv("\\ISO 2022 IR 87", VR_PN, "\x1b$B;3ED\x1b(B=x"),
                 "\xe5\xb1\xb1\xe7\x94\xb0=x");
    /* CR resets G0 even inside a JIS run. */
    CHECK_STR_EQ(conv("\\ISO 2022 IR 87", VR_LT, "\x1b$B;3\rab"), "\xe5\xb1\xb1\rab");
    /* Katakana G1 outside 0xA1-0xDF is invalid. */
    CHECK_STR_EQ(conv("ISO_IR 13", VR_LO, "\xb1\xe0"), "\xef\xbd\xb1\xef\xbf\xbd");
    /* Escape truncated after its intermediate byte. */
    CHECK_STR_EQ(conv("\\ISO 2022 IR 87", VR_LO, "a\x1b$"), "a\xef\xbf\xbd");
    CHECK_STR_EQ(conv("\\ISO 2022 IR 87", VR_LO, "a\x1b$\x01z"), "a\xef\xbf\xbd\x01z");
}

static void test_empty_and_limits(void)
{
    struct charset cs;
    charset_default(&cs);
    struct buf out = BUF_INIT;
    CHECK_INT_EQ(charset_to_utf8(&cs, NULL, 0, VR_LO, &out), 0);
    CHECK_INT_EQ(out.len, 0);
    CHECK(out.data != NULL && out.data[0] == '\0');
    buf_release(&out);

    /* The buffer's cap is honoured. */
    buf_init(&out, 4);
    CHECK_INT_EQ(charset_to_utf8(&cs, (const uint8_t *)"abcdef", 6, VR_LO, &out), -E2BIG);
    buf_release(&out);
    charset_parse("\\ISO 2022 IR 149", 16, &cs, NULL);
    buf_init(&out, 4);
    CHECK_INT_EQ(charset_to_utf8(&cs, (const uint8_t *)"\x1b$)C\xb1\xe8\xb1\xe8", 8, VR_LO, &out),
                 -E2BIG);
    buf_release(&out);
}

/* Runs longer than the internal chunk buffers: prefix + n copies of unit
 * must give n copies of want. */
static void check_long(const char *cs_value, const char *prefix, const char *unit,
                       const char *want, unsigned n)
{
    struct charset cs;
    struct buf in = BUF_INIT, out = BUF_INIT, expect = BUF_INIT;
    charset_parse(cs_value, strlen(cs_value), &cs, NULL);
    CHECK_INT_EQ(buf_puts(&in, prefix), 0);
    for (unsigned i = 0; i < n; i++) {
        CHECK_INT_EQ(buf_puts(&in, unit), 0);
        CHECK_INT_EQ(buf_puts(&expect, want), 0);
    }
    CHECK_INT_EQ(charset_to_utf8(&cs, (const uint8_t *)in.data, in.len, VR_LT, &out), 0);
    CHECK_INT_EQ(out.len, expect.len);
    CHECK(out.len == expect.len && memcmp(out.data, expect.data, out.len) == 0);
    buf_release(&in);
    buf_release(&out);
    buf_release(&expect);
}

static void test_long_runs(void)
{
    check_long("\\ISO 2022 IR 87", "\x1b$B", ";3", "\xe5\xb1\xb1", 1000);
    check_long("\\ISO 2022 IR 159", "\x1b$(D", "\x30\x21", "\xe4\xb8\x82", 1000);
    check_long("\\ISO 2022 IR 149", "\x1b$)C", "\xb1\xe8", "\xea\xb9\x80", 1000);
    check_long("\\ISO 2022 IR 58", "\x1b$)A", "\xd5\xc5", "\xe5\xbc\xa0", 1000);
    check_long("ISO_IR 126", "", "\xe1", "\xce\xb1", 3000);
    check_long("GB18030", "", "\x95\x32\x82\x36", "\xf0\xa0\x80\x80", 1000);
    check_long("ISO_IR 192", "", "\xf0\xa0\x80\x80", "\xf0\xa0\x80\x80", 1000);
    /* An invalid pair inside a long run costs one U+FFFD and keeps alignment. */
    check_long("\\ISO 2022 IR 149", "\x1b$)C", "\xb1\xe8\xa2\xe9", "\xea\xb9\x80\xef\xbf\xbd",
               500);
}

/* Pseudo-random bytes, biased to ESC and set-switching bytes, through every
 * charset: must terminate without reading past len (ASan/valgrind) and yield
 * valid UTF-8. */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t k;
        uint32_t min;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            k = 1;
            min = 0x80;
        } else if (b >= 0xE0 && b <= 0xEF) {
            k = 2;
            min = 0x800;
        } else if (b >= 0xF0 && b <= 0xF4) {
            k = 3;
            min = 0x10000;
        } else {
            return false;
        }
        if (i + k >= n)
            return false;
        uint32_t cp = b & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static void test_fuzz(void)
{
    static const char *const sets[] = {
        "",
        "ISO_IR 100",
        "ISO_IR 13",
        "ISO_IR 166",
        "ISO_IR 192",
        "GB18030",
        "GBK",
        "\\ISO 2022 IR 87\\ISO 2022 IR 159",
        "ISO 2022 IR 13\\ISO 2022 IR 87",
        "\\ISO 2022 IR 149",
        "\\ISO 2022 IR 58",
        "ISO 2022 IR 100\\ISO 2022 IR 126\\ISO 2022 IR 144",
    };
    static const uint8_t pick[] = {0x1b, '$', '(', ')', '-', 'B', 'C', 'A', 'D', 'I', 'J', '^',
                                   '=', '\\', '\r', 0x20, 0x21, 0x7e, 0x80, 0xa1, 0xb1, 0xfe, 0xff};
    uint32_t seed = 12345;
    unsigned bad = 0;
    for (unsigned round = 0; round < 3000; round++) {
        size_t len = round % 40;
        uint8_t *in = malloc(len ? len : 1); /* exact size: ASan catches overreads */
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned v = (seed >> 16) & 0x7FFF;
            in[i] = v % 3 ? pick[v % YY_ARRAY_LEN(pick)] : (uint8_t)(v >> 3);
        }
        const char *cs_value = sets[round % YY_ARRAY_LEN(sets)];
        struct charset cs;
        charset_parse(cs_value, strlen(cs_value), &cs, NULL);
        struct buf out = BUF_INIT;
        int r = charset_to_utf8(&cs, in, len, round & 1 ? VR_PN : VR_LO, &out);
        if (r != 0 || !valid_utf8((const uint8_t *)out.data, out.len) || out.len > 4 * len + 3) {
            bad++;
            CHECK_FAIL_("round %u (%s): r=%d", round, cs_value, r);
            print_hex("in ", in, len);
        }
        buf_release(&out);
        free(in);
    }
    CHECK_INT_EQ(bad, 0);
}

int main(void)
{
    RUN(test_cases_file);
    RUN(test_parse);
    RUN(test_conversions);
    RUN(test_empty_and_limits);
    RUN(test_long_runs);
    RUN(test_fuzz);
    return check_summary();
}
