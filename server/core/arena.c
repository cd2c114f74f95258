/* arena.c - see arena.h. */
#include "core/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/banned.h"

#define ARENA_BLOCK 16384
#define ARENA_ALIGN 16

struct arena_block {
    struct arena_block *next;
    size_t len;
    size_t cap;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena_hook {
    struct arena_hook *next;
    void (*fn)(void *);
    void *arg;
};

struct arena {
    struct arena_block *head;
    struct arena_hook *hooks;
    size_t used;
    size_t max_bytes;
};

struct arena *arena_new(size_t max_bytes)
{
    struct arena *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->max_bytes = max_bytes ? max_bytes : (size_t)64 << 20;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    while (a->hooks) {
        struct arena_hook *h = a->hooks;
        a->hooks = h->next;
        h->fn(h->arg);
    }
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void *arena_alloc(struct arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < size || a->used + need > a->max_bytes)
        return NULL;
    struct arena_block *b = a->head;
    if (!b || b->cap - b->len < need) {
        size_t cap = need > ARENA_BLOCK / 2 ? need : ARENA_BLOCK - sizeof(*b);
        struct arena_block *nb = malloc(sizeof(*nb) + cap);
        if (!nb)
            return NULL;
        nb->len = 0;
        nb->cap = cap;
        if (b && need > ARENA_BLOCK / 2) {
            /* a big one-off goes behind the current block so that the
             * current block keeps serving small allocations */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->data + b->len;
    b->len += need;
    a->used += need;
    return p;
}

void *arena_zalloc(struct arena *a, size_t size)
{
    void *p = arena_alloc(a, size);
    if (p)
        memset(p, 0, size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_vprintf(struct arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *p = arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

int arena_on_release(struct arena *a, void (*fn)(void *), void *arg)
{
    struct arena_hook *h = arena_alloc(a, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->next = a->hooks;
    a->hooks = h;
    return 0;
}

size_t arena_used(const struct arena *a)
{
    return a->used;
}
