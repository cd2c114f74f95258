/* config.c - see config.h. */
#include "core/common.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/banned.h"

enum ktype { K_STR, K_BOOL, K_UINT, K_SIZE };

struct key {
    const char *name;
    enum ktype type;
    size_t off;
    size_t cap; /* K_STR buffer size */
    const char *def;
    const char *help;
};

#define STR(f, d, h) {#f, K_STR, offsetof(struct config, f), sizeof(((struct config *)0)->f), d, h}
#define BOOL(f, d, h) {#f, K_BOOL, offsetof(struct config, f), 0, d, h}
#define UINT(f, d, h) {#f, K_UINT, offsetof(struct config, f), 0, d, h}
#define SIZE(f, d, h) {#f, K_SIZE, offsetof(struct config, f), 0, d, h}

static const struct key g_keys[] = {
    STR(listen, "127.0.0.1:8080", "address and port to listen on (HOST:PORT; port 0 picks a free one)"),
    STR(data, "./data", "data directory: stored objects and the index database"),
    STR(web_root, "", "directory of the viewer's static files (default: the web/ folder of the source tree)"),
    STR(public_url, "", "base URL written in RetrieveURL and BulkDataURI (default: from the request's Host header)"),
    STR(cors_origins, "", "origins allowed by CORS: empty for same-origin only, * for any, or a comma-separated list"),
    STR(log_level, "info", "debug, info, warn, error or off"),
    BOOL(overwrite, "false", "let a different object replace an already stored SOP Instance UID"),
    BOOL(direct_io, "true", "write received objects with O_DIRECT (not through the page cache; falls back where the file system refuses it)"),
    BOOL(one_flush, "true", "make a new object durable with one flush where the file system allows it (ext4, XFS): linked first, then one fsync, a CRC-32 in its inode for recovery; off: two flushes (file, then folder)"),
    BOOL(index_before_ack, "false", "answer a STOW only after the new object's index row is committed; off: answered once the object is durable, its row committed right after by a thread of its own, and every later request waits for it (one atomic read when nothing waits)"),
    UINT(index_gather_ms, "10", "with index_before_ack off: how long answered objects' rows may wait to be written together (at most 32 or 64 at once; a read makes them written at once; 0-60000)"),
    BOOL(access_log, "true", "write one access-log line per request on stderr"),
    UINT(max_connections, "256", "concurrent HTTP connections"),
    UINT(connection_timeout_s, "30", "seconds after which an idle or stalled connection is closed"),
    UINT(header_timeout_s, "10", "seconds a client gets to send a request's headers (slow senders are cut off)"),
    UINT(min_upload_rate, "1024", "bytes per second an upload must average over 10 s windows (0 = no minimum)"),
    UINT(shutdown_grace_s, "10", "seconds in-flight requests get to finish on SIGINT/SIGTERM"),
    SIZE(max_header_bytes, "32K", "request line plus headers of one request"),
    SIZE(max_body_bytes, "2G", "body of one STOW-RS request (413 over it)"),
    SIZE(max_part_bytes, "2G", "one part of a STOW-RS request"),
    UINT(max_parts, "10000", "parts in one STOW-RS request"),
    SIZE(max_query_bytes, "16K", "URL query string (414 over it)"),
    UINT(qido_default_limit, "1000", "QIDO-RS results when the request gives no limit"),
    UINT(qido_max_limit, "10000", "largest QIDO-RS limit honoured (a Warning header says when it cut)"),
    SIZE(max_decoded_bytes, "512M", "decoded pixel bytes one request may produce (413 over it)"),
    SIZE(render_cache_bytes, "32M", "memory for the rendered-image cache (0 turns it off)"),
    SIZE(metadata_cache_bytes, "24M", "memory for recently sent series/study metadata responses (0 turns it off)"),
    SIZE(metadata_disk_cache_bytes, "1G", "disk for series/study metadata kept gzip'd in <data>/cache/metadata (0 turns it off)"),
    UINT(jpeg_quality, "90", "default quality (1-100) of rendered and transcoded JPEG"),
    SIZE(disk_reserve_bytes, "64M", "free disk space kept: STOW-RS answers 503 below it"),
    UINT(import_jobs, "4", "files `yingyun import` stores at once (1-64; each waits for its fsync)"),
};

unsigned config_key_count(void)
{
    return (unsigned)YY_ARRAY_LEN(g_keys);
}

const char *config_key_name(unsigned i)
{
    return i < YY_ARRAY_LEN(g_keys) ? g_keys[i].name : NULL;
}

const char *config_key_help(unsigned i)
{
    return i < YY_ARRAY_LEN(g_keys) ? g_keys[i].help : NULL;
}

const char *config_key_default(unsigned i)
{
    return i < YY_ARRAY_LEN(g_keys) ? g_keys[i].def : NULL;
}

static const struct key *find_key(const char *name, size_t len)
{
    char norm[64];
    if (len >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i < len; i++)
        norm[i] = name[i] == '-' ? '_' : name[i];
    norm[len] = 0;
    for (size_t i = 0; i < YY_ARRAY_LEN(g_keys); i++)
        if (strcmp(g_keys[i].name, norm) == 0)
            return &g_keys[i];
    return NULL;
}

static int parse_size(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno || v[0] == '-')
        return -EINVAL;
    uint64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        mul = 1ull << 10;
        end++;
        break;
    case 'M':
        mul = 1ull << 20;
        end++;
        break;
    case 'G':
        mul = 1ull << 30;
        end++;
        break;
    case 'T':
        mul = 1ull << 40;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -EINVAL;
    if (n > UINT64_MAX / mul)
        return -ERANGE;
    *out = n * mul;
    return 0;
}

static int apply(struct config *c, const struct key *k, const char *v, char *err, size_t err_cap)
{
    char *base = (char *)c + k->off;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->cap) {
            snprintf(err, err_cap, "%s: value too long (at most %zu bytes)", k->name, k->cap - 1);
            return -EINVAL;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "on")) {
            *(bool *)base = true;
            return 0;
        }
        if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "off")) {
            *(bool *)base = false;
            return 0;
        }
        snprintf(err, err_cap, "%s: expected true or false, got \"%s\"", k->name, v);
        return -EINVAL;
    case K_UINT: {
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (end == v || *end || errno || n > 0xFFFFFFFFul || v[0] == '-') {
            snprintf(err, err_cap, "%s: expected a whole number, got \"%s\"", k->name, v);
            return -EINVAL;
        }
        *(unsigned *)base = (unsigned)n;
        return 0;
    }
    case K_SIZE: {
        uint64_t n;
        if (parse_size(v, &n) < 0) {
            snprintf(err, err_cap, "%s: expected a size such as 512K, 64M or 2G, got \"%s\"",
                     k->name, v);
            return -EINVAL;
        }
        *(uint64_t *)base = n;
        return 0;
    }
    }
    return -EINVAL;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    char err[128];
    for (size_t i = 0; i < YY_ARRAY_LEN(g_keys); i++)
        (void)apply(c, &g_keys[i], g_keys[i].def, err, sizeof(err));
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t err_cap)
{
    const struct key *k = find_key(key, strlen(key));
    if (!k) {
        snprintf(err, err_cap, "unknown setting \"%s\"", key);
        return -ENOENT;
    }
    return apply(c, k, value, err, err_cap);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

int config_load_file(struct config *c, const char *path, char *err, size_t err_cap)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(err, err_cap, "cannot open config file %s: %s", path, strerror(e));
        return -e;
    }
    char line[4096];
    unsigned lineno = 0;
    int r = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';' || *s == '[')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, err_cap, "%s:%u: expected \"key = value\"", path, lineno);
            r = -EINVAL;
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        char e2[256];
        r = config_set(c, key, val, e2, sizeof(e2));
        if (r < 0) {
            snprintf(err, err_cap, "%s:%u: %s", path, lineno, e2);
            break;
        }
    }
    fclose(f);
    return r;
}

static bool is_bool_word(const char *s)
{
    static const char *const w[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
    for (size_t i = 0; i < YY_ARRAY_LEN(w); i++)
        if (!strcmp(s, w[i]))
            return true;
    return false;
}

int config_parse_args(struct config *c, int argc, char **argv, int first, int *rest,
                      int rest_cap, int *n_rest, char *err, size_t err_cap)
{
    *n_rest = 0;
    /* --config first, so that flags override the file */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            break;
        if (!strcmp(a, "--config") || !strncmp(a, "--config=", 9)) {
            const char *path = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[i + 1] : NULL);
            if (!path) {
                snprintf(err, err_cap, "--config needs a file");
                return -EINVAL;
            }
            int r = config_load_file(c, path, err, err_cap);
            if (r < 0)
                return r;
        }
    }
    bool positional_only = false;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (positional_only || a[0] != '-' || a[1] != '-' || a[2] == 0) {
            if (!strcmp(a, "--") && !positional_only) {
                positional_only = true;
                continue;
            }
            if (*n_rest >= rest_cap) {
                snprintf(err, err_cap, "too many arguments");
                return -E2BIG;
            }
            rest[(*n_rest)++] = i;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        if (nl == 6 && !strncmp(name, "config", 6)) {
            if (!eq)
                i++;
            continue;
        }
        const struct key *k = find_key(name, nl);
        if (!k) {
            snprintf(err, err_cap, "unknown option --%.*s", (int)nl, name);
            return -ENOENT;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (k->type == K_BOOL && (i + 1 >= argc || !is_bool_word(argv[i + 1]))) {
            val = "true";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, err_cap, "--%s needs a value", k->name);
            return -EINVAL;
        }
        int r = apply(c, k, val, err, err_cap);
        if (r < 0)
            return r;
    }
    return 0;
}
