/*
 * web.c - the static viewer (web/) and the service status page.
 *
 * Files are opened relative to the web root directory fd with O_NOFOLLOW,
 * after route matching has already refused dot segments and encoded
 * slashes; hidden files are never served.
 */
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "core/arena.h"
#include "core/buf.h"
#include "dicomweb/handlers.h"
#include "index/index.h"
#include "yy_config.h"
#include "core/banned.h"

static const struct {
    const char *ext;
    const char *type;
} g_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".wasm", "application/wasm"},
    {".map", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < YY_ARRAY_LEN(g_types); i++)
            if (!strcmp(dot, g_types[i].ext))
                return g_types[i].type;
    return "application/octet-stream";
}

int web_get(struct req *r)
{
    const char *file = r->param[P_FILE];
    if (!file || !*file)
        file = "index.html";
    if (!r->app->web_root[0])
        return http_error(r, 404, "the viewer is not installed (web_root)");
    /* no hidden files, no absolute paths (dot segments never get here) */
    if (file[0] == '/' || strstr(file, "/.") || file[0] == '.')
        return http_error(r, 404, "no such file");
    int dfd = open(r->app->web_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return http_error(r, 404, "the viewer directory is missing");
    int fd = openat(dfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0 && !strchr(file, '.')) {
        /* client-side routes of the single-page viewer */
        fd = openat(dfd, "index.html", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        file = "index.html";
        if (fd >= 0 && fstat(fd, &st) < 0) {
            close(fd);
            fd = -1;
        }
    }
    close(dfd);
    if (fd < 0)
        return http_error(r, 404, "no such file");
    /* weak validator from size and mtime */
    char etag[64];
    snprintf(etag, sizeof(etag), "W/\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec);
    const char *inm = http_header(r, "If-None-Match");
    if (inm && !strcmp(inm, etag)) {
        close(fd);
        struct http_resp *resp = http_resp_buffer((void *)"", 0, true);
        if (!resp)
            return -ENOMEM;
        http_resp_header(resp, "ETag", etag);
        return http_send(r, 304, resp);
    }
    struct http_resp *resp = http_resp_fd(fd, 0, (uint64_t)st.st_size);
    if (!resp)
        return -ENOMEM;
    r->bytes_out += (uint64_t)st.st_size;
    http_resp_header(resp, "Content-Type", content_type(file));
    http_resp_header(resp, "ETag", etag);
    http_resp_header(resp, "Cache-Control", "no-cache");
    return http_send(r, 200, resp);
}

int service_status(struct req *r)
{
    uint64_t st = 0, se = 0, in = 0;
    int rc = index_totals(r->app->index, &st, &se, &in);
    if (rc < 0)
        return http_error(r, 503, "index unavailable");
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"name\":\"yingyun\",\"version\":\"%s\",\"studies\":%llu,\"series\":%llu,"
                     "\"instances\":%llu}\n",
                     YY_VERSION, (unsigned long long)st, (unsigned long long)se,
                     (unsigned long long)in);
    return http_send_text(r, 200, "application/json", body, (size_t)n);
}
