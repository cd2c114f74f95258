/*
 * qido_parse.h - the QIDO-RS query string as a typed search (PS3.18 10.6.1,
 * PS3.4 C.2.2.2): matching keys with their kind (single value, UID list,
 * wildcard, range, fuzzy person name), return keys (includefield), limit,
 * offset and orderby. Pure: no I/O, no HTTP; strings live in the arena.
 * A malformed or unknown parameter is -EINVAL with err naming it (400).
 */
#ifndef YY_QIDO_PARSE_H
#define YY_QIDO_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/query.h"
#include "index/index.h"

struct arena;

#define QIDO_MAX_RETURN 256

struct qido_params {
    /* inputs */
    struct arena *a;
    const struct query *query;
    enum index_level level;
    unsigned default_limit, max_limit;
    /* outputs */
    struct index_query q;         /* level, matches, order, limit, offset */
    bool all;                     /* includefield=all */
    uint32_t ret[QIDO_MAX_RETURN];/* return keys beyond the defaults */
    unsigned n_ret;
    struct buf warn;              /* Warning text (ignored keys, clamped limit) */
    char err[256];                /* reason of -EINVAL */
};

/* Sets the inputs; call qido_params_release() when done. */
void qido_params_init(struct qido_params *p, struct arena *a, const struct query *query,
                      enum index_level level, unsigned default_limit, unsigned max_limit);
void qido_params_release(struct qido_params *p);

/* Parses p->query. Returns 0, -EINVAL (p->err), -ENOMEM. */
int qido_parse(struct qido_params *p);

/* True when tag is among the return keys. */
bool qido_wants(const struct qido_params *p, uint32_t tag);

#endif
