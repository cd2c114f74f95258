/*
 * pn.h - person name search keys (PS3.4 C.2.2.2.1, fuzzy semantic matching
 * of PN as PS3.18 10.6.1.2.1 allows).
 *
 * A normalised key is the UTF-8 name lower-cased (ASCII, Latin-1, Latin
 * Extended-A, Greek, Cyrillic basics), with diacritics removed, full-width
 * ASCII folded to ASCII and runs of spaces kept as one. Component ('^') and
 * group ('=') delimiters are kept, so a key still tells alphabetic,
 * ideographic and phonetic groups apart. Pure functions.
 */
#ifndef YY_PN_H
#define YY_PN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* Appends the normalised key of s[0..len) (UTF-8) to out. */
int pn_normalize(const char *s, size_t len, struct buf *out);

/* Fuzzy match: query (normalised) is split into words on spaces, '^', ',' and
 * '='; each word must be a prefix of some name component of some group of
 * key (normalised), or, for a word without spaces in a CJK name, a prefix of
 * the concatenated family+given components ("wangxiaodong", "王小东").
 * DICOM wildcards '*' and '?' inside a word are honoured. */
bool pn_fuzzy_match(const char *key, const char *query);

/* DICOM wildcard match of whole strings ('*' any run, '?' one UTF-8
 * character); bounded work (no exponential backtracking). */
bool pn_wildcard_match(const char *pattern, const char *s);

#endif
