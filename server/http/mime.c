/*
 * mime.c - see mime.h.
 *
 * Grammar (RFC 9110 5.6, 8.3.1, 12.4.2, 12.5.1):
 *   media-type = type "/" subtype *( OWS ";" OWS [ name "=" value ] )
 *   value      = token / quoted-string
 *   Accept     = #( media-range ), empty list elements ignored
 * Leniencies: unquoted values may hold '/' and other visible characters
 * that are not tchars (clients send type=application/dicom unquoted; an
 * unquoted Content-Type boundary may even hold ','), whitespace is allowed
 * around '=', parameters may follow "q", and a quoted q value is read.
 * "q" is taken out of the parameters in mime_parse() too.
 */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "http/mime.h"
#include "core/banned.h"

struct cursor {
    const char *p;
    bool accept; /* ',' ends the media type */
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void skip_ows(struct cursor *c)
{
    while (is_ows(*c->p))
        c->p++;
}

static bool is_tchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Unquoted parameter value: visible ASCII except delimiters that end it. */
static bool is_value_char(const struct cursor *c, char ch)
{
    unsigned char u = (unsigned char)ch;
    if (u <= 0x20 || u >= 0x7f || ch == ';' || ch == '"' || ch == '\\')
        return false;
    return !(c->accept && ch == ',');
}

/* Lower-cased arena copy of a token; -EBADMSG when empty. */
static int take_token(struct arena *a, struct cursor *c, const char **out)
{
    const char *s = c->p;
    while (is_tchar(*c->p))
        c->p++;
    size_t len = (size_t)(c->p - s);
    if (len == 0)
        return -EBADMSG;
    char *t = arena_strndup(a, s, len);
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        if (t[i] >= 'A' && t[i] <= 'Z')
            t[i] = (char)(t[i] - 'A' + 'a');
    *out = t;
    return 0;
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; c->p at DQUOTE. */
static int take_quoted(struct arena *a, struct cursor *c, const char **out)
{
    const char *s = ++c->p;
    size_t n = 0;
    for (;;) {
        unsigned char u = (unsigned char)*c->p;
        if (u == '"')
            break;
        if (u == '\\') {
            c->p++;
            u = (unsigned char)*c->p;
        }
        /* qdtext and quoted-pair: HTAB, SP, VCHAR, obs-text */
        if (u == 0 || (u < 0x20 && u != '\t') || u == 0x7f)
            return -EBADMSG;
        c->p++;
        n++;
    }
    c->p++;
    char *v = arena_alloc(a, n + 1);
    if (!v)
        return -ENOMEM;
    size_t w = 0;
    for (const char *q = s; *q != '"'; q++) {
        if (*q == '\\')
            q++;
        v[w++] = *q;
    }
    v[w] = '\0';
    *out = v;
    return 0;
}

static int take_value(struct arena *a, struct cursor *c, const char **out)
{
    if (*c->p == '"')
        return take_quoted(a, c, out);
    const char *s = c->p;
    while (is_value_char(c, *c->p))
        c->p++;
    if (c->p == s)
        return -EBADMSG;
    *out = arena_strndup(a, s, (size_t)(c->p - s));
    return *out ? 0 : -ENOMEM;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
static int parse_q(const char *s, double *q)
{
    unsigned milli = 0;
    if (s[0] != '0' && s[0] != '1')
        return -EBADMSG;
    unsigned whole = (unsigned)(s[0] - '0');
    const char *p = s + 1;
    if (*p == '.') {
        p++;
        for (unsigned scale = 100, k = 0; *p; p++, k++, scale /= 10) {
            if (k == 3 || *p < '0' || *p > '9')
                return -EBADMSG;
            milli += (unsigned)(*p - '0') * scale;
        }
    }
    if (*p || (whole == 1 && milli != 0))
        return -EBADMSG;
    *q = whole ? 1.0 : milli / 1000.0;
    return 0;
}

/* One media type or range; stops at end of string or (accept) at ','. */
static int parse_one(struct arena *a, struct cursor *c, struct mime_type *out)
{
    int r;
    memset(out, 0, sizeof(*out));
    out->q = 1.0;
    skip_ows(c);
    r = take_token(a, c, &out->type);
    if (r < 0)
        return r;
    if (*c->p != '/')
        return -EBADMSG;
    c->p++;
    r = take_token(a, c, &out->subtype);
    if (r < 0)
        return r;
    if (strcmp(out->type, "*") == 0 && strcmp(out->subtype, "*") != 0)
        return -EBADMSG;
    for (;;) {
        skip_ows(c);
        if (*c->p != ';')
            break;
        c->p++;
        skip_ows(c);
        if (*c->p == ';' || *c->p == '\0' || (c->accept && *c->p == ','))
            continue; /* empty parameter */
        const char *name, *value;
        r = take_token(a, c, &name);
        if (r < 0)
            return r;
        skip_ows(c);
        if (*c->p != '=')
            return -EBADMSG;
        c->p++;
        skip_ows(c);
        r = take_value(a, c, &value);
        if (r < 0)
            return r;
        if (strcmp(name, "q") == 0) {
            r = parse_q(value, &out->q);
            if (r < 0)
                return r;
            continue;
        }
        if (out->n_params == MIME_MAX_PARAMS)
            return -EBADMSG;
        out->params[out->n_params].name = name;
        out->params[out->n_params].value = value;
        out->n_params++;
    }
    if (*c->p != '\0' && !(c->accept && *c->p == ','))
        return -EBADMSG;
    return 0;
}

int mime_parse(struct arena *a, const char *s, struct mime_type *out)
{
    if (!s)
        return -EBADMSG;
    struct cursor c = {s, false};
    return parse_one(a, &c, out);
}

static bool list_element_empty(struct cursor *c)
{
    skip_ows(c);
    return *c->p == ',' || *c->p == '\0';
}

int mime_parse_accept(struct arena *a, const char *s, struct mime_accept *out)
{
    struct cursor c = {s ? s : "", true};
    out->n = 0;
    for (;;) {
        if (!list_element_empty(&c)) {
            if (out->n == MIME_MAX_RANGES)
                return -E2BIG;
            int r = parse_one(a, &c, &out->ranges[out->n]);
            if (r < 0)
                return r;
            out->n++;
        }
        if (*c.p == '\0')
            break;
        c.p++; /* ',' */
    }
    if (out->n == 0) {
        /* RFC 9110 12.5.1: no Accept means any media type */
        struct mime_type *t = &out->ranges[0];
        memset(t, 0, sizeof(*t));
        t->type = "*";
        t->subtype = "*";
        t->q = 1.0;
        out->n = 1;
    }
    return 0;
}

const char *mime_param(const struct mime_type *t, const char *name)
{
    for (unsigned i = 0; i < t->n_params; i++)
        if (strcasecmp(t->params[i].name, name) == 0)
            return t->params[i].value;
    return NULL;
}

bool mime_matches(const struct mime_type *range, const char *type, const char *subtype)
{
    if (strcmp(range->type, "*") != 0 && strcasecmp(range->type, type) != 0)
        return false;
    return strcmp(range->subtype, "*") == 0 || strcasecmp(range->subtype, subtype) == 0;
}
