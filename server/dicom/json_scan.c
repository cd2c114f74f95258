/*
 * json_scan.c - top-level member walk over JSON text.
 */
#include "core/common.h"

#include <errno.h>

#include "dicom/json_scan.h"
#include "core/banned.h"

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\r' || t[i] == '\t'))
        i++;
    return i;
}

/* index just past the string starting at t[i] == '"', or len when cut */
static size_t skip_string(const char *t, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (t[i] == '\\')
            i++;
        else if (t[i] == '"')
            return i + 1;
    }
    return len + 1;
}

/* index just past the value starting at t[i], or > len when cut */
static size_t skip_value(const char *t, size_t len, size_t i)
{
    if (i >= len)
        return len + 1;
    if (t[i] == '"')
        return skip_string(t, len, i);
    if (t[i] == '{' || t[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = t[i];
            if (c == '"') {
                i = skip_string(t, len, i);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return len + 1;
    }
    /* number, true, false, null */
    while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\n' &&
           t[i] != '\r' && t[i] != '\t')
        i++;
    return i;
}

int json_scan_next(const char *text, size_t len, size_t *pos, struct json_member *m)
{
    size_t i = skip_ws(text, len, *pos);
    if (*pos == 0) {
        if (i >= len || text[i] != '{')
            return -EBADMSG;
        i = skip_ws(text, len, i + 1);
    } else if (i < len && text[i] == ',') {
        i = skip_ws(text, len, i + 1);
    } else if (i < len && text[i] == '}') {
        *pos = len;
        return 0;
    } else {
        return *pos >= len ? 0 : -EBADMSG;
    }
    if (i < len && text[i] == '}' && *pos == 0) {
        *pos = len;
        return 0;
    }
    if (i >= len || text[i] != '"')
        return -EBADMSG;
    size_t k = skip_string(text, len, i);
    if (k > len)
        return -EBADMSG;
    m->key = text + i + 1;
    m->key_len = k - i - 2;
    i = skip_ws(text, len, k);
    if (i >= len || text[i] != ':')
        return -EBADMSG;
    i = skip_ws(text, len, i + 1);
    size_t e = skip_value(text, len, i);
    if (e > len || e == i)
        return -EBADMSG;
    m->val = text + i;
    m->val_len = e - i;
    *pos = e;
    return 1;
}
