/*
 * config.h - every setting of the server, its default, and where it comes
 * from: built-in default < config file (--config FILE, "key = value" lines)
 * < command-line flag (--key VALUE or --key=VALUE). Every key is also a
 * flag; docs/configuration.md lists them all (a test checks that).
 *
 * Owns: struct config (plain values, no heap). Must not: start anything.
 */
#ifndef YY_CONFIG_H
#define YY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
    char listen[256];          /* HOST:PORT; port 0 = any free port */
    char data[1024];           /* data directory (store + index) */
    char web_root[1024];       /* static viewer files ("" = built-in default) */
    char public_url[512];      /* base URL in RetrieveURL / BulkDataURI ("" = from Host) */
    char cors_origins[1024];   /* "" = same-origin only, "*" = any, else comma list */
    char log_level[16];        /* debug, info, warn, error, off */
    bool overwrite;            /* a different object may replace a stored SOP Instance UID */
    bool direct_io;            /* received objects written with O_DIRECT */
    bool one_flush;            /* one fsync per new object where possible */
    bool index_before_ack;     /* STOW answered after the row commit, not when durable */
    unsigned index_gather_ms;  /* rows of answered objects gathered this long */
    bool access_log;           /* one line per request on stderr */
    unsigned max_connections;  /* concurrent HTTP connections */
    unsigned connection_timeout_s; /* idle / slow connection timeout */
    unsigned header_timeout_s; /* headers must be complete within */
    unsigned min_upload_rate;  /* bytes/s an upload must keep up */
    unsigned shutdown_grace_s; /* in-flight requests may finish within this */
    uint64_t max_header_bytes; /* request line + headers */
    uint64_t max_body_bytes;   /* one STOW-RS request */
    uint64_t max_part_bytes;   /* one part (instance) of a STOW-RS request */
    unsigned max_parts;        /* parts of one STOW-RS request */
    uint64_t max_query_bytes;  /* URL query string */
    unsigned qido_default_limit; /* QIDO rows when no limit is given */
    unsigned qido_max_limit;   /* largest accepted limit */
    uint64_t max_decoded_bytes;  /* decoded pixels one request may produce */
    uint64_t render_cache_bytes; /* rendered-image cache */
    unsigned jpeg_quality;     /* default JPEG quality */
    uint64_t metadata_cache_bytes; /* assembled metadata responses */
    uint64_t metadata_disk_cache_bytes; /* the same, gzip'd on disk */
    unsigned import_jobs;      /* files `yingyun import` stores at once */
    uint64_t disk_reserve_bytes; /* STOW answers 503 when free space would drop below */
};

/* Fills c with the built-in defaults. */
void config_defaults(struct config *c);

/* Sets key (as in the file; '-' and '_' are equivalent) to value. Returns
 * 0, -ENOENT for an unknown key, -EINVAL for a bad value; err says which. */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t err_cap);

/* Reads a config file. Returns 0 or -errno; err names file and line. */
int config_load_file(struct config *c, const char *path, char *err, size_t err_cap);

/* Applies --key VALUE / --key=VALUE flags from argv[first..argc); other
 * arguments (positional) are left in *rest (indexes into argv), at most
 * rest_cap. --config FILE is applied first wherever it appears. */
int config_parse_args(struct config *c, int argc, char **argv, int first, int *rest,
                      int rest_cap, int *n_rest, char *err, size_t err_cap);

/* Number of keys and key i's name / help text / default text (for --help
 * and the documentation test). */
unsigned config_key_count(void);
const char *config_key_name(unsigned i);
const char *config_key_help(unsigned i);
const char *config_key_default(unsigned i);

#endif
