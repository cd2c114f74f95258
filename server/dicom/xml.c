/* xml.c - see xml.h. */
#include "core/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dicom/dict.h"
#include "dicom/vr.h"
#include "dicom/xml.h"
#include "core/banned.h"

#define XML_MAX_DEPTH 64

static int put_escaped(struct buf *b, const char *s)
{
    int r = 0;
    for (; *s && r == 0; s++) {
        switch (*s) {
        case '<':
            r = buf_puts(b, "&lt;");
            break;
        case '>':
            r = buf_puts(b, "&gt;");
            break;
        case '&':
            r = buf_puts(b, "&amp;");
            break;
        case '"':
            r = buf_puts(b, "&quot;");
            break;
        default:
            /* XML 1.0 forbids most control characters */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r')
                r = buf_puts(b, "&#xFFFD;");
            else
                r = buf_putc(b, *s);
        }
    }
    return r;
}

static int put_value_text(struct buf *b, const json_t *v)
{
    char tmp[64];
    if (json_is_string(v))
        return put_escaped(b, json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(v));
        return buf_puts(b, tmp);
    }
    if (json_is_real(v)) {
        snprintf(tmp, sizeof(tmp), "%.16g", json_real_value(v));
        return buf_puts(b, tmp);
    }
    return 0;
}

static int put_pn_group(struct buf *b, const char *group, const char *name)
{
    static const char *const comps[] = {"FamilyName", "GivenName", "MiddleName", "NamePrefix",
                                        "NameSuffix"};
    int r = buf_printf(b, "<%s>", group);
    const char *p = name;
    for (int i = 0; i < 5 && r == 0; i++) {
        const char *e = strchr(p, '^');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l) {
            char *c = strndup(p, l);
            if (!c)
                return -ENOMEM;
            r = buf_printf(b, "<%s>", comps[i]);
            r |= put_escaped(b, c);
            r |= buf_printf(b, "</%s>", comps[i]);
            free(c);
        }
        if (!e)
            break;
        p = e + 1;
    }
    return r | buf_printf(b, "</%s>", group);
}

static int put_dataset(struct buf *b, const json_t *obj, unsigned depth);

static int put_attr(struct buf *b, const char *key, const json_t *el, unsigned depth)
{
    const char *vr = json_string_value(json_object_get(el, "vr"));
    if (!vr || strlen(key) != 8)
        return 0;
    uint32_t tag = (uint32_t)strtoul(key, NULL, 16);
    const struct dict_entry *d = dict_lookup_tag(tag);
    int r = buf_printf(b, "<DicomAttribute tag=\"%s\" vr=\"%.2s\"", key, vr);
    if (d && d->keyword && !(d->mask != 0xFFFFFFFFu))
        r |= buf_printf(b, " keyword=\"%s\"", d->keyword);
    if ((tag >> 16) & 1) {
        /* private: the creator is the (gggg,00xx) value; not tracked here */
    }
    r |= buf_putc(b, '>');
    const json_t *val = json_object_get(el, "Value");
    const json_t *bulk = json_object_get(el, "BulkDataURI");
    const json_t *inl = json_object_get(el, "InlineBinary");
    if (bulk && json_is_string(bulk)) {
        r |= buf_puts(b, "<BulkData uri=\"");
        r |= put_escaped(b, json_string_value(bulk));
        r |= buf_puts(b, "\"/>");
    } else if (inl && json_is_string(inl)) {
        r |= buf_puts(b, "<InlineBinary>");
        r |= put_escaped(b, json_string_value(inl));
        r |= buf_puts(b, "</InlineBinary>");
    } else if (json_is_array(val)) {
        size_t i;
        const json_t *v;
        json_array_foreach(val, i, v)
        {
            if (!strcmp(vr, "SQ")) {
                r |= buf_printf(b, "<Item number=\"%zu\">", i + 1);
                if (json_is_object(v))
                    r |= put_dataset(b, v, depth + 1);
                r |= buf_puts(b, "</Item>");
            } else if (!strcmp(vr, "PN")) {
                r |= buf_printf(b, "<PersonName number=\"%zu\">", i + 1);
                static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
                for (int g = 0; g < 3 && json_is_object(v); g++) {
                    const char *s = json_string_value(json_object_get(v, groups[g]));
                    if (s)
                        r |= put_pn_group(b, groups[g], s);
                }
                r |= buf_puts(b, "</PersonName>");
            } else if (json_is_null(v)) {
                r |= buf_printf(b, "<Value number=\"%zu\"/>", i + 1);
            } else {
                r |= buf_printf(b, "<Value number=\"%zu\">", i + 1);
                r |= put_value_text(b, v);
                r |= buf_puts(b, "</Value>");
            }
        }
    }
    return r | buf_puts(b, "</DicomAttribute>");
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_dataset(struct buf *b, const json_t *obj, unsigned depth)
{
    if (depth > XML_MAX_DEPTH)
        return -E2BIG;
    size_t n = json_object_size(obj);
    if (n == 0)
        return 0;
    const char **keys = malloc(n * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_keys);
    int r = 0;
    for (size_t i = 0; i < k && r == 0; i++)
        r = put_attr(b, keys[i], json_object_get(obj, keys[i]), depth);
    free(keys);
    return r;
}

int xml_from_json(const json_t *obj, struct buf *out)
{
    int r = buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<NativeDicomModel xmlns=\"http://dicom.nema.org/PS3.19/models/"
                          "NativeDICOM\">");
    if (r == 0 && json_is_object(obj))
        r = put_dataset(out, obj, 0);
    return r ? r : buf_puts(out, "</NativeDicomModel>\n");
}
