/*
 * charset.c - see charset.h.
 *
 * The decoder is a small ISO 2022 machine: G0 (bytes 0x21-0x7E) holds ASCII
 * or a 94x94 Japanese set, G1 (bytes 0xA0-0xFF) a 96-character ISO 8859 set,
 * JIS X 0201 katakana or a 94x94 set. Escape sequences (PS3.3 tables C.12-3
 * and C.12-4) switch G0 or G1; C0 controls and the delimiters of PS3.5
 * 6.1.2.5.3 switch both back to the initial sets of value 1. Each run of
 * bytes of one multi-byte set is rewritten in its EUC form (IR 87 -> EUC-JP,
 * IR 159 -> EUC-JP with 0x8F, IR 149 -> EUC-KR, IR 58 -> EUC-CN) and handed
 * to iconv; the stand-alone sets (UTF-8, GB18030, GBK) are converted whole,
 * since their trail bytes overlap ASCII delimiters and they have no escapes.
 *
 * Every input byte is consumed exactly once and every loop advances, so bad
 * input costs at most one U+FFFD per byte (per unit of a multi-byte set).
 */
#include "core/common.h"

#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "dicom/charset.h"
#include "dicom/vr.h"
#include "core/banned.h"

#define ESC 0x1B

/* Internal codes of the defined terms (struct charset.terms). */
enum term {
    TERM_IR6,
    TERM_IR100,
    TERM_IR101,
    TERM_IR109,
    TERM_IR110,
    TERM_IR144,
    TERM_IR127,
    TERM_IR126,
    TERM_IR138,
    TERM_IR148,
    TERM_IR203,
    TERM_IR166,
    TERM_IR13,
    TERM_IR192,
    TERM_GB18030,
    TERM_GBK,
    TERM_IR87,
    TERM_IR159,
    TERM_IR149,
    TERM_IR58,
    TERM_COUNT,
};

/* Graphic character sets. */
enum set {
    /* G0 */
    SET_ASCII,   /* ISO-IR 6; also ISO-IR 14 (JIS X 0201 Roman), read as ASCII like pydicom */
    SET_JIS0208, /* ISO-IR 87, 94x94 */
    SET_JIS0212, /* ISO-IR 159, 94x94 */
    /* G1 */
    SET_LATIN1,  /* ISO-IR 100; also bytes >= 0x80 under ISO-IR 6 (lenient, as pydicom) */
    SET_LATIN2,
    SET_LATIN3,
    SET_LATIN4,
    SET_CYRILLIC,
    SET_ARABIC,
    SET_GREEK,
    SET_HEBREW,
    SET_LATIN5,
    SET_LATIN9,
    SET_THAI,
    SET_KATAKANA, /* ISO-IR 13, JIS X 0201 katakana */
    SET_KSX1001,  /* ISO-IR 149, 94x94 */
    SET_GB2312,   /* ISO-IR 58, 94x94 */
    /* stand-alone, no code extensions (PS3.3 table C.12-5) */
    SET_UTF8,
    SET_GB18030,
    SET_GBK,
    SET_COUNT,
};

/* iconv source encodings (to "UTF-8"); NULL where we decode by hand. */
static const char *const set_iconv[SET_COUNT] = {
    [SET_JIS0208] = "EUC-JP",      [SET_JIS0212] = "EUC-JP",     [SET_LATIN2] = "ISO-8859-2",
    [SET_LATIN3] = "ISO-8859-3",   [SET_LATIN4] = "ISO-8859-4",  [SET_CYRILLIC] = "ISO-8859-5",
    [SET_ARABIC] = "ISO-8859-6",   [SET_GREEK] = "ISO-8859-7",   [SET_HEBREW] = "ISO-8859-8",
    [SET_LATIN5] = "ISO-8859-9",   [SET_LATIN9] = "ISO-8859-15", [SET_THAI] = "TIS-620",
    [SET_KSX1001] = "EUC-KR",      [SET_GB2312] = "EUC-CN",      [SET_GB18030] = "GB18030",
    [SET_GBK] = "GBK",
};

/* Defined terms of PS3.3 tables C.12-2 to C.12-5. */
static const struct {
    const char *name;
    uint8_t term;
    bool iso2022;
} term_names[] = {
    {"ISO_IR 6", TERM_IR6, false},           {"ISO_IR 100", TERM_IR100, false},
    {"ISO_IR 101", TERM_IR101, false},       {"ISO_IR 109", TERM_IR109, false},
    {"ISO_IR 110", TERM_IR110, false},       {"ISO_IR 144", TERM_IR144, false},
    {"ISO_IR 127", TERM_IR127, false},       {"ISO_IR 126", TERM_IR126, false},
    {"ISO_IR 138", TERM_IR138, false},       {"ISO_IR 148", TERM_IR148, false},
    {"ISO_IR 203", TERM_IR203, false},       {"ISO_IR 166", TERM_IR166, false},
    {"ISO_IR 13", TERM_IR13, false},         {"ISO_IR 192", TERM_IR192, false},
    {"GB18030", TERM_GB18030, false},        {"GBK", TERM_GBK, false},
    {"ISO 2022 IR 6", TERM_IR6, true},       {"ISO 2022 IR 100", TERM_IR100, true},
    {"ISO 2022 IR 101", TERM_IR101, true},   {"ISO 2022 IR 109", TERM_IR109, true},
    {"ISO 2022 IR 110", TERM_IR110, true},   {"ISO 2022 IR 144", TERM_IR144, true},
    {"ISO 2022 IR 127", TERM_IR127, true},   {"ISO 2022 IR 126", TERM_IR126, true},
    {"ISO 2022 IR 138", TERM_IR138, true},   {"ISO 2022 IR 148", TERM_IR148, true},
    {"ISO 2022 IR 203", TERM_IR203, true},   {"ISO 2022 IR 166", TERM_IR166, true},
    {"ISO 2022 IR 13", TERM_IR13, true},     {"ISO 2022 IR 87", TERM_IR87, true},
    {"ISO 2022 IR 159", TERM_IR159, true},   {"ISO 2022 IR 149", TERM_IR149, true},
    {"ISO 2022 IR 58", TERM_IR58, true},
};

/* Initial G0/G1 for value 1 of (0008,0005). A multi-byte G0 set cannot be
 * value 1 (PS3.3 C.12.1.1.2); if it is, start in ASCII like an ISO-2022-JP
 * decoder. For the stand-alone sets g0 == g1 names the whole-value decoder. */
static const struct state {
    uint8_t g0, g1;
} term_initial[TERM_COUNT] = {
    [TERM_IR6] = {SET_ASCII, SET_LATIN1},      [TERM_IR100] = {SET_ASCII, SET_LATIN1},
    [TERM_IR101] = {SET_ASCII, SET_LATIN2},    [TERM_IR109] = {SET_ASCII, SET_LATIN3},
    [TERM_IR110] = {SET_ASCII, SET_LATIN4},    [TERM_IR144] = {SET_ASCII, SET_CYRILLIC},
    [TERM_IR127] = {SET_ASCII, SET_ARABIC},    [TERM_IR126] = {SET_ASCII, SET_GREEK},
    [TERM_IR138] = {SET_ASCII, SET_HEBREW},    [TERM_IR148] = {SET_ASCII, SET_LATIN5},
    [TERM_IR203] = {SET_ASCII, SET_LATIN9},    [TERM_IR166] = {SET_ASCII, SET_THAI},
    [TERM_IR13] = {SET_ASCII, SET_KATAKANA},   [TERM_IR192] = {SET_UTF8, SET_UTF8},
    [TERM_GB18030] = {SET_GB18030, SET_GB18030}, [TERM_GBK] = {SET_GBK, SET_GBK},
    [TERM_IR87] = {SET_ASCII, SET_LATIN1},     [TERM_IR159] = {SET_ASCII, SET_LATIN1},
    [TERM_IR149] = {SET_ASCII, SET_KSX1001},   [TERM_IR58] = {SET_ASCII, SET_GB2312},
};

/* Escape sequences (bytes after ESC), PS3.3 tables C.12-3 and C.12-4. */
static const struct {
    char seq[4];
    uint8_t g; /* 0 or 1 */
    uint8_t set;
} escapes[] = {
    {"(B", 0, SET_ASCII},   {"(J", 0, SET_ASCII}, /* ISO-IR 14 Roman, see SET_ASCII */
    {"$B", 0, SET_JIS0208}, {"$@", 0, SET_JIS0208}, /* JIS C 6226-1978, as ISO-2022-JP */
    {"$(D", 0, SET_JIS0212},
    {"-A", 1, SET_LATIN1},  {"-B", 1, SET_LATIN2},  {"-C", 1, SET_LATIN3},
    {"-D", 1, SET_LATIN4},  {"-L", 1, SET_CYRILLIC}, {"-G", 1, SET_ARABIC},
    {"-F", 1, SET_GREEK},   {"-H", 1, SET_HEBREW},  {"-M", 1, SET_LATIN5},
    {"-b", 1, SET_LATIN9},  {"-T", 1, SET_THAI},    {")I", 1, SET_KATAKANA},
    {"$)C", 1, SET_KSX1001}, {"$)A", 1, SET_GB2312},
};

/* iconv descriptors of one call, opened on first use. */
struct conv {
    iconv_t cd[SET_COUNT];
    bool tried[SET_COUNT];
};

static void conv_init(struct conv *cv)
{
    for (unsigned i = 0; i < SET_COUNT; i++) {
        cv->cd[i] = (iconv_t)-1;
        cv->tried[i] = false;
    }
}

static void conv_release(struct conv *cv)
{
    for (unsigned i = 0; i < SET_COUNT; i++) {
        if (cv->cd[i] != (iconv_t)-1)
            (void)iconv_close(cv->cd[i]);
    }
}

static iconv_t conv_get(struct conv *cv, unsigned set)
{
    if (!cv->tried[set] && set_iconv[set]) {
        cv->tried[set] = true;
        cv->cd[set] = iconv_open("UTF-8", set_iconv[set]);
    }
    return cv->cd[set];
}

static int put_cp(struct buf *out, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(out, u, n);
}

static int put_bad(struct buf *out)
{
    return buf_append(out, "\xEF\xBF\xBD", 3); /* U+FFFD */
}

/* Converts in[0..len) from set with iconv. Where iconv rejects a sequence,
 * one U+FFFD replaces `unit` bytes (1 for variable-width encodings, the
 * character size for runs we built of whole characters); an incomplete
 * sequence at the end becomes one U+FFFD. */
static int conv_run(struct conv *cv, unsigned set, const uint8_t *in, size_t len, size_t unit,
                    struct buf *out)
{
    iconv_t cd = conv_get(cv, set);
    int r = 0;
    if (cd == (iconv_t)-1) {
        /* No converter in this libc: keep ASCII, replace the rest. */
        for (size_t i = 0; i < len && r == 0; i++)
            r = in[i] < 0x80 ? buf_putc(out, (char)in[i]) : put_bad(out);
        return r;
    }
    (void)iconv(cd, NULL, NULL, NULL, NULL);
    char *ip = (char *)(uintptr_t)in; /* iconv's prototype lacks const */
    size_t il = len;
    while (il > 0) {
        char tmp[512];
        char *op = tmp;
        size_t ol = sizeof(tmp);
        size_t n = iconv(cd, &ip, &il, &op, &ol);
        int e = errno;
        r = buf_append(out, tmp, (size_t)(op - tmp));
        if (r < 0)
            return r;
        if (n != (size_t)-1)
            break;
        if (e == E2BIG)
            continue;
        r = put_bad(out);
        if (r < 0)
            return r;
        if (e == EINVAL) /* incomplete character at the end */
            break;
        size_t skip = unit < il ? unit : il;
        ip += skip;
        il -= skip;
        (void)iconv(cd, NULL, NULL, NULL, NULL);
    }
    return 0;
}

/* ISO_IR 192: copies well-formed UTF-8 (Unicode table 3-7); each maximal
 * ill-formed subpart becomes one U+FFFD, as Python's decoder does. */
static int put_utf8(const uint8_t *in, size_t len, struct buf *out)
{
    size_t i = 0;
    int r = 0;
    while (i < len && r == 0) {
        size_t j = i;
        while (j < len && in[j] < 0x80)
            j++;
        if (j > i) {
            r = buf_append(out, in + i, j - i);
            i = j;
            continue;
        }
        uint8_t b = in[i];
        unsigned need;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else {
            r = put_bad(out);
            i++;
            continue;
        }
        size_t k = 1;
        while (k <= need && i + k < len) {
            uint8_t c = in[i + k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
                break;
            k++;
        }
        if (k == need + 1)
            r = buf_append(out, in + i, k);
        else
            r = put_bad(out);
        i += k;
    }
    return r;
}

/* GL bytes 0x21-0x7E of a 94x94 set in G0 (IR 87, IR 159): pairs become
 * EUC-JP (bytes | 0x80, with SS3 0x8F for JIS X 0212). An odd last byte is
 * one U+FFFD. */
static int put_jis(struct conv *cv, unsigned set, const uint8_t *in, size_t len,
                   struct buf *out)
{
    size_t unit = set == SET_JIS0212 ? 3 : 2;
    uint8_t euc[384];
    size_t i = 0;
    int r = 0;
    while (i + 1 < len && r == 0) {
        size_t n = 0;
        for (; i + 1 < len && n + unit <= sizeof(euc); i += 2) {
            if (unit == 3)
                euc[n++] = 0x8F;
            euc[n++] = in[i] | 0x80;
            euc[n++] = in[i + 1] | 0x80;
        }
        r = conv_run(cv, set, euc, n, unit, out);
    }
    if (r == 0 && i < len)
        r = put_bad(out);
    return r;
}

/* GR bytes (>= 0x80) in G1 set. */
static int put_gr(struct conv *cv, unsigned set, const uint8_t *in, size_t len,
                  struct buf *out)
{
    size_t i = 0;
    int r = 0;
    while (i < len && r == 0) {
        uint8_t b = in[i];
        size_t j = i + 1;
        switch (set) {
        case SET_LATIN1:
            r = put_cp(out, b);
            break;
        case SET_KATAKANA:
            /* JIS X 0201 0xA1-0xDF -> U+FF61-U+FF9F (halfwidth katakana). */
            r = b >= 0xA1 && b <= 0xDF ? put_cp(out, 0xFF61u + (b - 0xA1u)) : put_bad(out);
            break;
        case SET_KSX1001:
        case SET_GB2312:
            if (b < 0xA1 || b == 0xFF) {
                r = put_bad(out);
                break;
            }
            while (j < len && in[j] >= 0xA1 && in[j] != 0xFF)
                j++;
            r = conv_run(cv, set, in + i, (j - i) & ~(size_t)1, 2, out);
            if (r == 0 && ((j - i) & 1))
                r = put_bad(out);
            break;
        default: /* 96-character ISO 8859 / TIS-620 sets: C1 controls pass through */
            if (b < 0xA0) {
                r = put_cp(out, b);
                break;
            }
            while (j < len && in[j] >= 0xA0)
                j++;
            r = conv_run(cv, set, in + i, j - i, 1, out);
            break;
        }
        i = j;
    }
    return r;
}

/* Parses the escape sequence at in[0] == ESC: ESC, up to three intermediate
 * bytes 0x20-0x2F, a final byte 0x30-0x7E. Returns the bytes it spans (>= 1)
 * and sets *idx to the escapes[] entry, or -1 when unknown or malformed. */
static size_t parse_escape(const uint8_t *in, size_t len, int *idx)
{
    size_t j = 1;
    *idx = -1;
    while (j < len && j < 4 && in[j] >= 0x20 && in[j] <= 0x2F)
        j++;
    if (j >= len || in[j] < 0x30 || in[j] > 0x7E)
        return j; /* truncated or malformed: ESC and its intermediates */
    size_t n = j; /* bytes after ESC, including the final */
    for (unsigned k = 0; k < YY_ARRAY_LEN(escapes); k++) {
        if (strlen(escapes[k].seq) == n && memcmp(escapes[k].seq, in + 1, n) == 0) {
            *idx = (int)k;
            break;
        }
    }
    return j + 1;
}

/* PS3.5 6.1.2.5.3: the delimiters before which value 1's sets are active
 * again. '\\' separates values except in the single-valued LT, ST and UT,
 * where it is text; '^' and '=' separate PN components and groups. */
static bool is_delimiter(uint8_t b, uint16_t vr)
{
    if (b == '\\')
        return vr != VR_LT && vr != VR_ST && vr != VR_UT;
    if (b == '^' || b == '=')
        return vr == VR_PN;
    return false;
}

void charset_default(struct charset *cs)
{
    memset(cs, 0, sizeof(*cs));
    cs->n_terms = 1;
    cs->terms[0] = TERM_IR6;
    cs->iso2022 = false;
}

static int find_term(const char *t, size_t n, bool *iso2022)
{
    for (unsigned k = 0; k < YY_ARRAY_LEN(term_names); k++) {
        if (strlen(term_names[k].name) == n && memcmp(term_names[k].name, t, n) == 0) {
            *iso2022 = term_names[k].iso2022;
            return term_names[k].term;
        }
    }
    return -1;
}

/* Looks a term up, also accepting the misspellings pydicom corrects:
 * "ISO IR 100" / "ISO-IR 100" and "ISO-2022-IR-87" style separators. */
static int lookup_term(const char *t, size_t n, bool *iso2022)
{
    int code = find_term(t, n, iso2022);
    if (code >= 0 || n < 7 || n > 24 || memcmp(t, "ISO", 3) != 0)
        return code;
    char fixed[32];
    memcpy(fixed, t, n);
    if (t[3] != '_' && memcmp(t + 4, "IR", 2) == 0)
        fixed[3] = '_';
    else if (n > 12 && memcmp(t + 4, "2022", 4) == 0 && memcmp(t + 9, "IR", 2) == 0)
        fixed[3] = fixed[8] = fixed[11] = ' ';
    else
        return -1;
    return find_term(fixed, n, iso2022);
}

int charset_parse(const char *value, size_t len, struct charset *out, unsigned *n_unknown)
{
    unsigned unknown = 0;
    charset_default(out);
    out->n_terms = 0;
    if (!value)
        len = 0;
    size_t i = 0;
    for (;;) {
        size_t s = i;
        while (i < len && value[i] != '\\')
            i++;
        size_t e = i;
        while (s < e && (value[s] == ' ' || value[s] == '\0'))
            s++;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\0'))
            e--;
        bool is2022 = false;
        int code = TERM_IR6;
        if (e > s) {
            code = lookup_term(value + s, e - s, &is2022);
            if (code < 0) {
                code = TERM_IR6;
                unknown++;
            }
        }
        /* An empty value 1 means the default repertoire (PS3.3 C.12.1.1.2). */
        if (out->n_terms < CHARSET_MAX_TERMS)
            out->terms[out->n_terms++] = (uint8_t)code;
        out->iso2022 |= is2022;
        if (i >= len)
            break;
        i++;
    }
    if (n_unknown)
        *n_unknown = unknown;
    return 0;
}

bool charset_is_utf8(const struct charset *cs)
{
    if (cs->n_terms == 0)
        return true;
    if (cs->terms[0] == TERM_IR192)
        return true;
    /* Default repertoire: UTF-8 as long as the text is ASCII (the caller's
     * check; charset_to_utf8 reads bytes >= 0x80 as ISO 8859-1). */
    return cs->n_terms == 1 && cs->terms[0] == TERM_IR6 && !cs->iso2022;
}

bool charset_passthrough(const struct charset *cs, const uint8_t *in, size_t len)
{
    if (cs->n_terms && cs->terms[0] == TERM_IR192)
        return true;
    if (!charset_is_utf8(cs))
        return false;
    for (size_t i = 0; i < len; i++)
        if (in[i] >= 0x80)
            return false;
    return true;
}

int charset_to_utf8(const struct charset *cs, const uint8_t *in, size_t len, uint16_t vr,
                    struct buf *out)
{
    unsigned first = cs->n_terms && cs->terms[0] < TERM_COUNT ? cs->terms[0] : TERM_IR6;
    const struct state init = term_initial[first];
    struct state st = init;
    struct conv cv;
    int r = 0;

    if (len == 0)
        return buf_append(out, "", 0); /* out->data is a C string afterwards */
    conv_init(&cv);
    if (init.g0 == SET_UTF8) {
        r = put_utf8(in, len, out);
        goto out;
    }
    if (init.g0 == SET_GB18030 || init.g0 == SET_GBK) {
        r = conv_run(&cv, init.g0, in, len, 1, out);
        goto out;
    }

    size_t i = 0;
    while (i < len && r == 0) {
        uint8_t b = in[i];
        if (b == ESC && cs->iso2022) {
            int k;
            size_t n = parse_escape(in + i, len - i, &k);
            if (k < 0)
                r = put_bad(out);
            else if (escapes[k].g == 0)
                st.g0 = escapes[k].set;
            else
                st.g1 = escapes[k].set;
            i += n;
        } else if (b < 0x20 || b == 0x7F) {
            /* CR LF FF TAB and any other control: back to value 1's sets. */
            r = buf_putc(out, (char)b);
            st = init;
            i++;
        } else if (b == 0x20 && st.g0 != SET_ASCII) {
            r = buf_putc(out, ' '); /* SPACE is outside every 94-set (ISO 2022) */
            i++;
        } else if (b < 0x80 && st.g0 == SET_ASCII) {
            size_t j = i;
            while (j < len && in[j] >= 0x20 && in[j] < 0x7F && !is_delimiter(in[j], vr))
                j++;
            if (j == i) { /* a delimiter */
                j++;
                st = init;
            }
            r = buf_append(out, in + i, j - i);
            i = j;
        } else if (b < 0x80) {
            /* A 94x94 set in G0: its bytes, even '\\' '^' '=', are halves of
             * characters; the encoder switched back before real delimiters. */
            size_t j = i;
            while (j < len && in[j] > 0x20 && in[j] < 0x7F)
                j++;
            r = put_jis(&cv, st.g0, in + i, j - i, out);
            i = j;
        } else {
            size_t j = i;
            while (j < len && in[j] >= 0x80)
                j++;
            r = put_gr(&cv, st.g1, in + i, j - i, out);
            i = j;
        }
    }
out:
    conv_release(&cv);
    return r;
}
