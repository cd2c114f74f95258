/* pn.c - see pn.h. */
#include "core/common.h"

#include <stdint.h>
#include <string.h>

#include "dicom/pn.h"
#include "core/banned.h"

/* Decodes one UTF-8 code point; returns its length (>=1) and U+FFFD for a
 * bad byte. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        *cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        *cp = c & 0x07;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (len < n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        *cp = *cp << 6 | (s[i] & 0x3F);
    }
    return n;
}

static int utf8_put(struct buf *b, uint32_t cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | cp >> 18);
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(b, o, n);
}

/* Latin-1 supplement U+00C0..U+00FF folded to lower-case base letters. */
static const char g_latin1[65] = "aaaaaaaceeeeiiiidnooooo*ouuuuypsaaaaaaaceeeeiiiidnooooo/ouuuuypy";

static uint32_t fold(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp >= 0xC0 && cp <= 0xFF && cp != 0xD7 && cp != 0xF7)
        return (uint32_t)(unsigned char)g_latin1[cp - 0xC0];
    if (cp >= 0x100 && cp <= 0x17F) {
        /* Latin Extended-A: pairs of upper/lower, base letters by range */
        static const char base[] =
            "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiiijjkkklllllll"
            "lllnnnnnnnnnoooooooorrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";
        size_t i = cp - 0x100;
        if (i < sizeof(base) - 1)
            return (uint32_t)(unsigned char)base[i];
        return cp;
    }
    if (cp >= 0xFF01 && cp <= 0xFF5E) /* full-width ASCII */
        return fold(cp - 0xFF01 + 0x21);
    if (cp == 0x3000) /* ideographic space */
        return ' ';
    if (cp >= 0x391 && cp <= 0x3A9) /* Greek capitals */
        return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F) /* Cyrillic capitals */
        return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F)
        return cp + 80;
    return cp;
}

int pn_normalize(const char *s, size_t len, struct buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    bool space = false;
    while (i < len) {
        uint32_t cp;
        i += utf8_decode(u + i, len - i, &cp);
        /* combining diacritical marks are dropped */
        if (cp >= 0x300 && cp <= 0x36F)
            continue;
        cp = fold(cp);
        if (cp == ' ') {
            space = true;
            continue;
        }
        if (space) {
            int r = buf_putc(out, ' ');
            if (r < 0)
                return r;
            space = false;
        }
        int r = utf8_put(out, cp);
        if (r < 0)
            return r;
    }
    if (out->data == NULL)
        return buf_append(out, "", 0);
    return 0;
}

/* Iterative wildcard match with single backtrack point: linear-ish and
 * never exponential. '?' matches one UTF-8 character. */
static bool wild(const char *p, size_t pl, const char *s, size_t sl)
{
    size_t pi = 0, si = 0, star_p = (size_t)-1, star_s = 0;
    while (si < sl) {
        if (pi < pl && p[pi] == '*') {
            star_p = pi++;
            star_s = si;
        } else if (pi < pl && p[pi] == '?') {
            uint32_t cp;
            si += utf8_decode((const unsigned char *)s + si, sl - si, &cp);
            pi++;
        } else if (pi < pl && p[pi] == s[si]) {
            pi++;
            si++;
        } else if (star_p != (size_t)-1) {
            pi = star_p + 1;
            uint32_t cp;
            star_s += utf8_decode((const unsigned char *)s + star_s, sl - star_s, &cp);
            si = star_s;
        } else {
            return false;
        }
    }
    while (pi < pl && p[pi] == '*')
        pi++;
    return pi == pl;
}

bool pn_wildcard_match(const char *pattern, const char *s)
{
    return wild(pattern, strlen(pattern), s, strlen(s));
}

static bool is_word_sep(char c)
{
    return c == ' ' || c == '^' || c == ',' || c == '=';
}

/* word (with wildcards) is a prefix of text[0..tl) */
static bool prefix_match(const char *w, size_t wl, const char *t, size_t tl)
{
    /* a prefix match is a wildcard match of "w*" */
    char pat[256];
    if (wl + 2 > sizeof(pat))
        return false;
    memcpy(pat, w, wl);
    pat[wl] = '*';
    return wild(pat, wl + 1, t, tl);
}

static bool word_matches(const char *w, size_t wl, const char *key)
{
    /* every component of every group, and every group's concatenation of
     * components without separators */
    const char *g = key;
    for (;;) {
        const char *gend = strchr(g, '=');
        size_t glen = gend ? (size_t)(gend - g) : strlen(g);
        const char *c = g;
        char cat[512];
        size_t cl = 0;
        while (c < g + glen) {
            const char *cend = c;
            while (cend < g + glen && *cend != '^' && *cend != ' ')
                cend++;
            if (cend > c && prefix_match(w, wl, c, (size_t)(cend - c)))
                return true;
            if (cl + (size_t)(cend - c) < sizeof(cat)) {
                memcpy(cat + cl, c, (size_t)(cend - c));
                cl += (size_t)(cend - c);
            }
            c = cend + 1;
        }
        if (cl && prefix_match(w, wl, cat, cl))
            return true;
        if (!gend)
            return false;
        g = gend + 1;
    }
}

bool pn_fuzzy_match(const char *key, const char *query)
{
    if (!key)
        return false;
    const char *q = query;
    bool any = false;
    while (*q) {
        while (*q && is_word_sep(*q))
            q++;
        const char *e = q;
        while (*e && !is_word_sep(*e))
            e++;
        if (e > q) {
            any = true;
            if (!word_matches(q, (size_t)(e - q), key))
                return false;
        }
        q = e;
    }
    return any;
}
