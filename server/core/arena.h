/*
 * arena.h - per-request bump allocator with release hooks (after nginx's
 * ngx_pool_t and h2o's mem pool).
 *
 * Owns: blocks of memory handed out by arena_alloc(); nothing is freed on its
 * own, everything goes at arena_free(). Release hooks run in reverse order of
 * registration, before the memory is freed, so they may close fds and unlink
 * temp files that the request still holds.
 * Must not: hold pixel data or file contents (those are malloc'ed after a
 * size check and freed by the step that used them).
 */
#ifndef YY_ARENA_H
#define YY_ARENA_H

#include <stdarg.h>
#include <stddef.h>

struct arena;

/* A new arena that refuses to grow beyond max_bytes (0 = 64 MiB).
 * Returns NULL on OOM. Owned: free with arena_free(). */
struct arena *arena_new(size_t max_bytes);

/* Runs release hooks, then frees every block. Accepts NULL. */
void arena_free(struct arena *a);

/* size bytes aligned for any type; NULL when over the limit or OOM.
 * Borrowed until arena_free(). */
void *arena_alloc(struct arena *a, size_t size);
void *arena_zalloc(struct arena *a, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *arena_vprintf(struct arena *a, const char *fmt, va_list ap);

/* Registers fn(arg) to run at arena_free(). Returns 0 or -ENOMEM. */
int arena_on_release(struct arena *a, void (*fn)(void *), void *arg);

/* Bytes handed out so far (for limits and tests). */
size_t arena_used(const struct arena *a);

#endif
