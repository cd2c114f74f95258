/*
 * query.c - see query.h.
 *
 * Decoding follows the WHATWG application/x-www-form-urlencoded parser for
 * '&' and '+' (which applies to keys and values alike) but, unlike it,
 * rejects malformed escapes instead of passing them through: a QIDO key or
 * value that is not what the client meant must give 400, not a wrong match.
 */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "http/query.h"
#include "core/banned.h"

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 0, -EBADMSG or -ENOMEM; *out NUL-terminated in the arena. */
static int decode(struct arena *a, const char *s, size_t len, bool plus_space, char **out,
                  size_t *out_len)
{
    if (len == SIZE_MAX)
        return -ENOMEM;
    char *d = arena_alloc(a, len + 1);
    if (!d)
        return -ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (len - i < 3)
                return -EBADMSG;
            int hi = hex_val(s[i + 1]);
            int lo = hex_val(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -EBADMSG;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == '\0')
            return -EBADMSG;
        d[w++] = c;
    }
    d[w] = '\0';
    *out = d;
    if (out_len)
        *out_len = w;
    return 0;
}

char *query_decode(struct arena *a, const char *s, size_t len, bool plus_space, size_t *out_len)
{
    char *d;
    return decode(a, s, len, plus_space, &d, out_len) < 0 ? NULL : d;
}

int query_parse(struct arena *a, const char *raw, struct query *out, const char **bad_key)
{
    out->n = 0;
    if (bad_key)
        *bad_key = NULL;
    if (!raw)
        return 0;
    const char *p = raw;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > 0) {
            const char *eq = memchr(p, '=', seg);
            size_t klen = eq ? (size_t)(eq - p) : seg;
            char *key, *value;
            if (out->n == QUERY_MAX_PARAMS)
                return -E2BIG;
            int r = decode(a, p, klen, true, &key, NULL);
            if (r == 0 && eq)
                r = decode(a, eq + 1, seg - klen - 1, true, &value, NULL);
            else if (r == 0)
                r = decode(a, "", 0, true, &value, NULL);
            if (r == -EBADMSG && bad_key)
                *bad_key = arena_strndup(a, p, klen);
            if (r < 0)
                return r;
            out->p[out->n].key = key;
            out->p[out->n].value = value;
            out->n++;
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return 0;
}

const char *query_get(const struct query *q, const char *key)
{
    for (unsigned i = 0; i < q->n; i++)
        if (strcmp(q->p[i].key, key) == 0)
            return q->p[i].value;
    return NULL;
}
