/*
 * mp_in.c - see mp_in.h.
 *
 * States: PREAMBLE and BODY scan for the delimiter "\n--boundary" with
 * memmem() over each chunk and hand the bytes before it to part_data in one
 * call; DELIM checks the rest of the delimiter line (padding, CRLF or "--");
 * HEADERS copies the header block into a bounded buffer; EPILOGUE ignores
 * everything.
 *
 * Invariant of the body scan: the only bytes ever held back are a proper or
 * full prefix of pat = "\r\n--boundary" (or of pat + 1 when it starts at the
 * LF), so they are represented by (h_off, h_len) into pat and need no copy.
 * A match can only start at CR or LF, which the boundary never contains, so
 * a failed partial match never hides an earlier one (no KMP needed).
 */
#include "core/common.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/mp_in.h"
#include "core/banned.h"

#define MP_IN_MAX_BOUNDARY 70
#define MP_IN_DEFAULT_HEADER_BYTES 16384
#define MP_IN_MAX_HEADER_BYTES ((size_t)1 << 24)

enum mp_state {
    ST_PREAMBLE, /* before the first delimiter: bytes discarded */
    ST_DELIM,    /* after "--boundary": deciding close, padding, line end */
    ST_DELIM_DASH,
    ST_DELIM_PAD,
    ST_DELIM_CR,
    ST_HEADERS,
    ST_BODY,
    ST_EPILOGUE,
};

struct mp_in {
    enum mp_state state;
    bool in_part;   /* part_begin called, part_end not yet */
    bool h_virtual; /* the held '\n' is the one implied at a body start */
    size_t h_off;   /* held bytes are pat[h_off .. h_off + h_len) */
    size_t h_len;
    size_t pat_len; /* strlen("\r\n--") + boundary length */
    char pat[MP_IN_MAX_BOUNDARY + 5];

    char *hdr; /* header block being collected; owned */
    size_t hdr_len;
    size_t hdr_line; /* offset of the start of the current line in hdr */
    size_t max_header_bytes;

    struct mp_in_cb cb;
    void *ctx;
    unsigned parts;
    int err;
    const char *why;
    struct mp_part_headers ph;
};

/* RFC 2046 5.1.1 bchars, which exclude CR and LF; space is not last. */
static bool valid_boundary(const char *b, size_t len)
{
    static const char extra[] = "'()+_,-./:=? ";
    if (len < 1 || len > MP_IN_MAX_BOUNDARY || b[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && !memchr(extra, c, sizeof(extra) - 1))
            return false;
    }
    return true;
}

struct mp_in *mp_in_new(const char *boundary, size_t max_header_bytes, const struct mp_in_cb *cb,
                        void *ctx)
{
    if (!boundary || !cb)
        return NULL;
    size_t blen = strnlen(boundary, MP_IN_MAX_BOUNDARY + 1);
    if (!valid_boundary(boundary, blen))
        return NULL;
    if (max_header_bytes == 0)
        max_header_bytes = MP_IN_DEFAULT_HEADER_BYTES;
    if (max_header_bytes > MP_IN_MAX_HEADER_BYTES)
        return NULL;
    struct mp_in *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    /* +1: parse_headers() may write one NUL past the block */
    m->hdr = malloc(max_header_bytes + 1);
    if (!m->hdr) {
        free(m);
        return NULL;
    }
    memcpy(m->pat, "\r\n--", 4);
    memcpy(m->pat + 4, boundary, blen);
    m->pat_len = blen + 4;
    m->max_header_bytes = max_header_bytes;
    m->cb = *cb;
    m->ctx = ctx;
    m->why = "";
    /* The first delimiter may open the body: pretend a line end precedes it. */
    m->state = ST_PREAMBLE;
    m->h_off = 1;
    m->h_len = 1;
    m->h_virtual = true;
    return m;
}

void mp_in_free(struct mp_in *m)
{
    if (!m)
        return;
    free(m->hdr);
    free(m);
}

const char *mp_in_error(const struct mp_in *m)
{
    return m->why;
}

unsigned mp_in_parts(const struct mp_in *m)
{
    return m->parts;
}

static int bad(struct mp_in *m, const char *why)
{
    m->why = why;
    return -EBADMSG;
}

static int emit(struct mp_in *m, const void *p, size_t len)
{
    if (m->state != ST_BODY || len == 0 || !m->cb.part_data)
        return 0;
    int r = m->cb.part_data(m->ctx, p, len);
    if (r < 0)
        m->why = "stopped by callback";
    return r < 0 ? r : 0;
}

/* The held prefix turned out to be content. */
static int emit_held(struct mp_in *m)
{
    size_t skip = m->h_virtual ? 1 : 0;
    int r = emit(m, m->pat + m->h_off + skip, m->h_len - skip);
    m->h_len = 0;
    m->h_virtual = false;
    return r;
}

/* What may follow "--boundary" in a delimiter: "--", transport padding, or
 * a line end. Anything else means the text merely starts with the boundary
 * (RFC 2046 forbids it, but Go's mime/multipart also reads it as content). */
static bool delim_follows(uint8_t c)
{
    return c == '-' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void found_delim(struct mp_in *m)
{
    m->h_len = 0;
    m->h_virtual = false;
    m->state = ST_DELIM;
}

/* PREAMBLE and BODY. Consumes up to n bytes, stopping right after a
 * delimiter "--boundary" (then the state is ST_DELIM). */
static int feed_body(struct mp_in *m, const uint8_t *d, size_t n, size_t *used)
{
    size_t i = 0;
    int r;

    /* 1. Continue a partial match held from the previous chunk. */
    while (m->h_len) {
        size_t pos = m->h_off + m->h_len;
        if (pos == m->pat_len) {
            if (i == n)
                goto hold_all;
            if (delim_follows(d[i])) {
                found_delim(m);
                *used = i;
                return 0;
            }
            r = emit_held(m);
        } else if (i == n) {
            goto hold_all;
        } else if (d[i] == (uint8_t)m->pat[pos]) {
            m->h_len++;
            i++;
            continue;
        } else {
            r = emit_held(m); /* d[i] is rescanned below */
        }
        if (r < 0)
            return r;
    }

    /* 2. Whole delimiters inside this chunk. */
    size_t start = i;
    const char *needle = m->pat + 1;
    size_t nlen = m->pat_len - 1;
    while (i < n) {
        const uint8_t *p = memmem(d + i, n - i, needle, nlen);
        if (!p)
            break;
        size_t q = (size_t)(p - d);
        size_t end = q > start && d[q - 1] == '\r' ? q - 1 : q;
        size_t after = q + nlen;
        if (after == n) {
            r = emit(m, d + start, end - start);
            m->h_off = end == q ? 1 : 0;
            m->h_len = n - end;
            *used = n;
            return r;
        }
        if (delim_follows(d[after])) {
            r = emit(m, d + start, end - start);
            found_delim(m);
            *used = after;
            return r;
        }
        i = q + 1;
    }

    /* 3. Hold back a tail that may be the start of a delimiter. Only a
     * proper prefix can be there, so it is shorter than pat_len. */
    size_t hold = n;
    size_t lo = n - start > m->pat_len - 1 ? n - (m->pat_len - 1) : start;
    for (size_t k = lo; k < n; k++) {
        if ((d[k] == '\r' && memcmp(d + k, m->pat, n - k) == 0) ||
            (d[k] == '\n' && memcmp(d + k, m->pat + 1, n - k) == 0)) {
            hold = k;
            break;
        }
    }
    r = emit(m, d + start, hold - start);
    if (hold < n) {
        m->h_off = d[hold] == '\r' ? 0 : 1;
        m->h_len = n - hold;
    }
    *used = n;
    return r;

hold_all:
    *used = n;
    return 0;
}

static int end_part(struct mp_in *m)
{
    if (!m->in_part)
        return 0;
    m->in_part = false;
    if (!m->cb.part_end)
        return 0;
    int r = m->cb.part_end(m->ctx);
    if (r < 0)
        m->why = "stopped by callback";
    return r < 0 ? r : 0;
}

/* Rest of a delimiter line, byte by byte: it is a few bytes long. */
static int feed_delim(struct mp_in *m, const uint8_t *d, size_t n, size_t *used)
{
    size_t i = 0;
    for (; i < n; i++) {
        uint8_t c = d[i];
        switch (m->state) {
        case ST_DELIM:
            if (c == '-') {
                m->state = ST_DELIM_DASH;
                continue;
            }
            /* fall through */
        case ST_DELIM_PAD:
            if (c == ' ' || c == '\t') {
                m->state = ST_DELIM_PAD;
                continue;
            }
            if (c == '\r') {
                m->state = ST_DELIM_CR;
                continue;
            }
            if (c == '\n')
                goto line_done;
            return bad(m, "junk after boundary delimiter");
        case ST_DELIM_CR:
            if (c == '\n')
                goto line_done;
            return bad(m, "CR without LF after boundary delimiter");
        case ST_DELIM_DASH:
            if (c != '-')
                return bad(m, "malformed close delimiter");
            m->state = ST_EPILOGUE;
            *used = i + 1;
            return end_part(m);
        default:
            return bad(m, "internal state error");
        }
    }
    *used = n;
    return 0;

line_done:
    *used = i + 1;
    m->state = ST_HEADERS;
    m->hdr_len = 0;
    m->hdr_line = 0;
    return end_part(m);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static void trim_tail(char *s, size_t *w, size_t floor)
{
    while (*w > floor && is_ws(s[*w - 1]))
        (*w)--;
}

/* Parses hdr[0..hdr_len), which ends with an empty line, in place: names
 * are lower-cased, folded lines joined (the CRLF removed, RFC 5322 2.2.3),
 * values trimmed; each string gets a NUL where a ':' or line end was, so the
 * text never grows. */
static int parse_headers(struct mp_in *m)
{
    char *h = m->hdr;
    size_t len = m->hdr_len, r = 0, w = 0;
    struct mp_part_headers *ph = &m->ph;
    size_t name_off[MP_IN_MAX_HEADERS], value_off[MP_IN_MAX_HEADERS];
    bool open = false;

    if (memchr(h, '\0', len))
        return bad(m, "NUL byte in part headers");
    ph->n = 0;
    ph->content_type = NULL;
    ph->content_location = NULL;
    while (r < len) {
        char *line = h + r;
        char *eol = memchr(line, '\n', len - r);
        size_t ll = (size_t)(eol - line);
        r += ll + 1;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break;
        if (is_ws(line[0])) {
            if (!open)
                return bad(m, "folded line without a header");
            memmove(h + w, line, ll);
            w += ll;
            continue;
        }
        if (open) {
            trim_tail(h, &w, value_off[ph->n - 1]);
            h[w++] = '\0';
        }
        if (ph->n == MP_IN_MAX_HEADERS)
            return bad(m, "too many part headers");
        char *colon = memchr(line, ':', ll);
        if (!colon)
            return bad(m, "part header line without ':'");
        size_t nl = (size_t)(colon - line);
        while (nl && is_ws(line[nl - 1]))
            nl--;
        if (nl == 0)
            return bad(m, "empty part header name");
        name_off[ph->n] = w;
        for (size_t k = 0; k < nl; k++) {
            char c = line[k];
            if ((unsigned char)c <= ' ' || c == 0x7f)
                return bad(m, "invalid character in part header name");
            h[w++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        h[w++] = '\0';
        size_t v = (size_t)(colon - line) + 1;
        while (v < ll && is_ws(line[v]))
            v++;
        value_off[ph->n] = w;
        memmove(h + w, line + v, ll - v);
        w += ll - v;
        ph->n++;
        open = true;
    }
    if (open) {
        trim_tail(h, &w, value_off[ph->n - 1]);
        h[w++] = '\0';
    }
    for (unsigned k = 0; k < ph->n; k++) {
        ph->h[k].name = h + name_off[k];
        ph->h[k].value = h + value_off[k];
        if (!ph->content_type && strcmp(ph->h[k].name, "content-type") == 0)
            ph->content_type = ph->h[k].value;
        else if (!ph->content_location && strcmp(ph->h[k].name, "content-location") == 0)
            ph->content_location = ph->h[k].value;
    }
    return 0;
}

static int begin_part(struct mp_in *m)
{
    int r = parse_headers(m);
    if (r < 0)
        return r;
    m->parts++;
    m->in_part = true;
    m->state = ST_BODY;
    /* "headers CRLF CRLF --boundary" is an empty body: the blank line's
     * CRLF is the delimiter's (RFC 2046: body-part := headers [CRLF *OCTET]). */
    m->h_off = 1;
    m->h_len = 1;
    m->h_virtual = true;
    if (m->cb.part_begin) {
        r = m->cb.part_begin(m->ctx, &m->ph);
        if (r < 0) {
            m->why = "stopped by callback";
            return r;
        }
    }
    return 0;
}

/* Copies header lines into hdr until an empty line. */
static int feed_headers(struct mp_in *m, const uint8_t *d, size_t n, size_t *used)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *lf = memchr(d + i, '\n', n - i);
        size_t take = lf ? (size_t)(lf - d) + 1 - i : n - i;
        if (take > m->max_header_bytes - m->hdr_len)
            return bad(m, "part header block too long");
        memcpy(m->hdr + m->hdr_len, d + i, take);
        m->hdr_len += take;
        i += take;
        if (!lf)
            break;
        size_t line_len = m->hdr_len - m->hdr_line;
        if (line_len == 1 || (line_len == 2 && m->hdr[m->hdr_line] == '\r')) {
            *used = i;
            return begin_part(m);
        }
        m->hdr_line = m->hdr_len;
    }
    *used = n;
    return 0;
}

int mp_in_feed(struct mp_in *m, const uint8_t *data, size_t len)
{
    size_t i = 0;
    if (m->err)
        return m->err;
    while (i < len) {
        size_t used = 0;
        int r;
        switch (m->state) {
        case ST_PREAMBLE:
        case ST_BODY:
            r = feed_body(m, data + i, len - i, &used);
            break;
        case ST_DELIM:
        case ST_DELIM_DASH:
        case ST_DELIM_PAD:
        case ST_DELIM_CR:
            r = feed_delim(m, data + i, len - i, &used);
            break;
        case ST_HEADERS:
            r = feed_headers(m, data + i, len - i, &used);
            break;
        case ST_EPILOGUE:
            return 0;
        default:
            r = bad(m, "internal state error");
            break;
        }
        if (r < 0) {
            m->err = r;
            return r;
        }
        i += used;
    }
    return 0;
}

int mp_in_finish(struct mp_in *m)
{
    if (m->err)
        return m->err;
    switch (m->state) {
    case ST_EPILOGUE:
        return 0;
    case ST_PREAMBLE:
        m->err = bad(m, "no parts: boundary delimiter not found");
        break;
    default:
        m->err = bad(m, "body ended inside a part");
        break;
    }
    return m->err;
}
