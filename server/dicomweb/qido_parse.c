/* qido_parse.c - see qido_parse.h. */
#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "dicom/dict.h"
#include "dicom/pn.h"
#include "dicom/vr.h"
#include "dicomweb/qido_parse.h"
#include "core/banned.h"

#define MAX_RETURN QIDO_MAX_RETURN

void qido_params_init(struct qido_params *p, struct arena *a, const struct query *query,
                      enum index_level level, unsigned default_limit, unsigned max_limit)
{
    memset(p, 0, sizeof(*p));
    p->a = a;
    p->query = query;
    p->level = level;
    p->q.level = level;
    p->default_limit = default_limit;
    p->max_limit = max_limit;
    buf_init(&p->warn, 4096);
}

void qido_params_release(struct qido_params *p)
{
    buf_release(&p->warn);
}

bool qido_wants(const struct qido_params *p, uint32_t tag)
{
    for (unsigned i = 0; i < p->n_ret; i++)
        if (p->ret[i] == tag)
            return true;
    return false;
}


/* Records a 400 reason; returns -EINVAL. */
static int bad(struct qido_params *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct qido_params *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof(q->err), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Parses a keyword or 8 hex digits into a tag. */
static int parse_tag(const char *s, uint32_t *tag)
{
    size_t n = strlen(s);
    if (n == 8) {
        bool hex = true;
        for (size_t i = 0; i < 8 && hex; i++)
            hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                  (s[i] >= 'A' && s[i] <= 'F');
        if (hex) {
            *tag = (uint32_t)strtoul(s, NULL, 16);
            return 0;
        }
    }
    const struct dict_entry *d = dict_lookup_keyword(s);
    if (!d || d->mask != 0xFFFFFFFFu)
        return -ENOENT;
    *tag = d->tag;
    return 0;
}

static uint16_t tag_vr(uint32_t tag)
{
    const struct dict_entry *d = dict_lookup_tag(tag);
    return d ? d->vr : VR_UN;
}

static void add_warning(struct qido_params *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_warning(struct qido_params *q, const char *fmt, ...)
{
    if (q->warn.len > 2000)
        return;
    if (q->warn.len)
        buf_puts(&q->warn, "; ");
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    buf_puts(&q->warn, tmp);
}

static int add_return(struct qido_params *q, uint32_t tag)
{
    for (unsigned i = 0; i < q->n_ret; i++)
        if (q->ret[i] == tag)
            return 0;
    if (q->n_ret == MAX_RETURN)
        return -E2BIG;
    q->ret[q->n_ret++] = tag;
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* DA: YYYYMMDD (also the old YYYY.MM.DD); TM: HH[MM[SS[.F{1,6}]]]. */
static bool valid_da(const char *s)
{
    size_t n = strlen(s);
    if (n == 10 && s[4] == '.' && s[7] == '.')
        return all_digits(s, 4) && all_digits(s + 5, 2) && all_digits(s + 8, 2);
    return n == 8 && all_digits(s, 8);
}

static bool valid_tm(const char *s)
{
    size_t n = strlen(s);
    const char *dot = strchr(s, '.');
    size_t ip = dot ? (size_t)(dot - s) : n;
    if (ip == 0 || ip > 6 || ip % 2 || !all_digits(s, ip))
        return false;
    if (dot)
        return ip == 6 && n - ip - 1 >= 1 && n - ip - 1 <= 6 && all_digits(dot + 1, n - ip - 1);
    return true;
}

static bool valid_dt(const char *s)
{
    size_t n = strlen(s);
    return n >= 4 && n <= 26;
}

static char *normalise_pn(struct arena *a, const char *v)
{
    struct buf b;
    buf_init(&b, 4096);
    if (pn_normalize(v, strlen(v), &b) < 0) {
        buf_release(&b);
        return NULL;
    }
    /* trailing empty components do not constrain: "doe^" == "doe" */
    size_t n = b.len;
    while (n && (b.data[n - 1] == '^' || b.data[n - 1] == ' '))
        n--;
    char *s = arena_strndup(a, b.data ? b.data : "", n);
    buf_release(&b);
    return s;
}

static int parse_match(struct qido_params *q, const char *key, uint32_t tag, const char *value,
                       bool fuzzy)
{
        bool pn = false;
    if (!index_can_match(q->level, tag, &pn)) {
        /* a known attribute we do not index: returned, not matched
         * (PS3.18 10.6.1.2.3 lets the server ignore it, with a Warning) */
        if (*value && strcmp(value, "*") != 0)
            add_warning(q, "matching on %s is not supported and was ignored", key);
        return add_return(q, tag);
    }
    int rr = add_return(q, tag);
    if (rr < 0)
        return rr;
    if (!*value || !strcmp(value, "*"))
        return 0; /* universal match: return key only */
    if (q->q.n_match == INDEX_MAX_MATCH)
        return bad(q, "too many matching keys");
    struct index_match *m = &q->q.match[q->q.n_match];
    memset(m, 0, sizeof(*m));
    m->tag = tag;
    uint16_t vr = tag_vr(tag);
    if (tag == 0x00080061)
        vr = VR_CS; /* ModalitiesInStudy */
    size_t vl = strlen(value);
    if (vl > 1024)
        return bad(q, "value of %s is too long", key);
    for (size_t i = 0; i < vl; i++)
        if ((unsigned char)value[i] < 0x20)
            return bad(q, "value of %s contains control characters", key);
    bool wild = strchr(value, '*') || strchr(value, '?');
    if (vr == VR_UI) {
        if (wild)
            return bad(q, "%s: wildcards are not allowed in UIDs", key);
        /* UID list: backslash or comma separated (PS3.18 8.3.4.1) */
        unsigned n = 1;
        for (const char *p = value; *p; p++)
            n += (*p == ',' || *p == '\\');
        if (n > INDEX_MAX_LIST)
            return bad(q, "%s: more than %d UIDs", key, INDEX_MAX_LIST);
        const char **list = arena_alloc(q->a, n * sizeof(*list));
        if (!list)
            return -ENOMEM;
        unsigned k = 0;
        const char *p = value;
        while (1) {
            const char *e = p;
            while (*e && *e != ',' && *e != '\\')
                e++;
            char *u = arena_strndup(q->a, p, (size_t)(e - p));
            if (!u)
                return -ENOMEM;
            size_t ul = strlen(u);
            bool ok = ul > 0 && ul <= 64;
            for (size_t i = 0; ok && i < ul; i++)
                ok = (u[i] >= '0' && u[i] <= '9') || u[i] == '.';
            if (!ok)
                return bad(q, "%s: \"%.64s\" is not a valid UID", key, u);
            list[k++] = u;
            if (!*e)
                break;
            p = e + 1;
        }
        if (k == 1) {
            m->kind = MATCH_SINGLE;
            m->value = list[0];
        } else {
            m->kind = MATCH_LIST;
            m->list = list;
            m->n_list = k;
        }
    } else if (vr == VR_DA || vr == VR_TM || vr == VR_DT) {
        bool (*valid)(const char *) = vr == VR_DA ? valid_da : vr == VR_TM ? valid_tm : valid_dt;
        const char *dash = strchr(value, '-');
        if (wild)
            return bad(q, "%s: wildcards are not allowed in dates and times", key);
        if (dash) {
            char *lo = arena_strndup(q->a, value, (size_t)(dash - value));
            char *hi = arena_strdup(q->a, dash + 1);
            if (!lo || !hi)
                return -ENOMEM;
            if ((!*lo && !*hi) || (*lo && !valid(lo)) || (*hi && !valid(hi)) ||
                strchr(hi, '-'))
                return bad(q, "%s: \"%.40s\" is not a valid range", key, value);
            m->kind = MATCH_RANGE;
            m->lo = *lo ? lo : NULL;
            m->hi = *hi ? hi : NULL;
        } else {
            if (!valid(value))
                return bad(q, "%s: \"%.40s\" is not a valid %s", key, value,
                                  vr == VR_DA ? "date (YYYYMMDD)" : "time (HHMMSS)");
            m->kind = MATCH_SINGLE;
            m->value = value;
        }
    } else if (pn) {
        char *nv = normalise_pn(q->a, value);
        if (!nv)
            return -ENOMEM;
        if (!*nv)
            return 0;
        m->value = nv;
        m->kind = fuzzy ? MATCH_FUZZY : wild ? MATCH_WILDCARD : MATCH_SINGLE;
    } else if (vr == VR_IS || vr == VR_US || vr == VR_UL || vr == VR_SS || vr == VR_SL) {
        if (wild || !all_digits(value + (value[0] == '-'), vl - (value[0] == '-')) || vl > 12)
            return bad(q, "%s: \"%.40s\" is not an integer", key, value);
        m->kind = MATCH_SINGLE;
        m->value = value;
    } else {
        m->kind = wild ? MATCH_WILDCARD : MATCH_SINGLE;
        m->value = value;
        /* ModalitiesInStudy may list several: CT\MR (PS3.4 C.6.1.1.2) */
        if (tag == 0x00080061 && !wild && (strchr(value, '\\') || strchr(value, ','))) {
            unsigned n = 1;
            for (const char *p = value; *p; p++)
                n += (*p == ',' || *p == '\\');
            const char **list = arena_alloc(q->a, n * sizeof(*list));
            if (!list)
                return -ENOMEM;
            unsigned k = 0;
            const char *p = value;
            while (1) {
                const char *e = p;
                while (*e && *e != ',' && *e != '\\')
                    e++;
                list[k++] = arena_strndup(q->a, p, (size_t)(e - p));
                if (!*e)
                    break;
                p = e + 1;
            }
            m->kind = MATCH_LIST;
            m->list = list;
            m->n_list = k;
        }
    }
    q->q.n_match++;
    return 0;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out)
{
    if (!*v || strlen(v) > 12 || !all_digits(v, strlen(v)))
        return -EINVAL;
    unsigned long long n = strtoull(v, NULL, 10);
    if (n > max)
        return -ERANGE;
    *out = n;
    return 0;
}

int qido_parse(struct qido_params *q)
{
    bool fuzzy = false, have_limit = false;
    unsigned long long limit = q->default_limit, offset = 0;
    for (unsigned i = 0; i < q->query->n; i++) {
        const char *k = q->query->p[i].key, *v = q->query->p[i].value;
        if (!strcmp(k, "fuzzymatching")) {
            if (strcmp(v, "true") && strcmp(v, "false"))
                return bad(q, "fuzzymatching must be true or false");
            fuzzy = !strcmp(v, "true");
        }
    }
    for (unsigned i = 0; i < q->query->n; i++) {
        const char *k = q->query->p[i].key, *v = q->query->p[i].value;
        int rc;
        if (!strcmp(k, "fuzzymatching") || !strcmp(k, "accept") || !strcmp(k, "charset") ||
            !strcmp(k, "emptyvaluematching") || !strcmp(k, "multiplevaluematching"))
            continue;
        if (!strcmp(k, "limit")) {
            rc = parse_uint(v, 1000000000ull, &limit);
            if (rc < 0)
                return bad(q, "limit must be a non-negative integer, got \"%.32s\"",
                                  v);
            have_limit = true;
            continue;
        }
        if (!strcmp(k, "offset")) {
            rc = parse_uint(v, 1000000000ull, &offset);
            if (rc < 0)
                return bad(q, "offset must be a non-negative integer, got \"%.32s\"",
                                  v);
            continue;
        }
        if (!strcmp(k, "includefield")) {
            const char *p = v;
            while (1) {
                const char *e = strchr(p, ',');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                char *name = arena_strndup(q->a, p, l);
                if (!name)
                    return -ENOMEM;
                if (!strcmp(name, "all")) {
                    q->all = true;
                } else if (*name) {
                    uint32_t tag;
                    if (strchr(name, '.')) {
                        /* a sequence path: return the whole top-level sequence */
                        char *dot = strchr(name, '.');
                        *dot = 0;
                    }
                    if (parse_tag(name, &tag) < 0)
                        return bad(q, "includefield: unknown attribute \"%.64s\"",
                                          name);
                    if (add_return(q, tag) < 0)
                        return bad(q, "too many includefield values");
                }
                if (!e)
                    break;
                p = e + 1;
            }
            continue;
        }
        if (!strcmp(k, "orderby")) {
            const char *p = v;
            while (1) {
                const char *e = strchr(p, ',');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                char *name = arena_strndup(q->a, p, l);
                if (!name)
                    return -ENOMEM;
                bool desc = false;
                char *nm = name;
                if (*nm == '-' || *nm == '+') {
                    desc = *nm == '-';
                    nm++;
                }
                uint32_t tag;
                if (*nm) {
                    if (parse_tag(nm, &tag) < 0)
                        return bad(q, "orderby: unknown attribute \"%.64s\"", nm);
                    if (!index_can_order(q->level, tag))
                        return bad(q, "orderby: %.64s cannot be sorted on at this "
                                                  "level",
                                          nm);
                    if (q->q.n_order == INDEX_MAX_ORDER)
                        return bad(q, "orderby: too many keys");
                    q->q.order[q->q.n_order].tag = tag;
                    q->q.order[q->q.n_order].desc = desc;
                    q->q.n_order++;
                }
                if (!e)
                    break;
                p = e + 1;
            }
            continue;
        }
        /* an attribute: keyword, tag, or a sequence path */
        uint32_t tag;
        if (strchr(k, '.')) {
            char *top = arena_strdup(q->a, k);
            if (!top)
                return -ENOMEM;
            *strchr(top, '.') = 0;
            if (parse_tag(top, &tag) < 0)
                return bad(q, "unknown attribute \"%.64s\" in query parameter \"%.64s\"",
                                  top, k);
            add_warning(q, "matching in sequences (%s) is not supported and was ignored", k);
            (void)add_return(q, tag);
            continue;
        }
        if (parse_tag(k, &tag) < 0)
            return bad(q, "unknown query parameter or attribute \"%.64s\"", k);
        rc = parse_match(q, k, tag, v, fuzzy);
        if (rc != 0)
            return rc;
    }
    if (limit > q->max_limit) {
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%u", q->max_limit);
        add_warning(q, "limit reduced to the maximum of %s", tmp);
        limit = q->max_limit;
    }
    (void)have_limit;
    q->q.limit = (unsigned)limit;
    q->q.offset = (unsigned)offset;
    return 0;
}

