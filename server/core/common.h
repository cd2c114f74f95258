/*
 * common.h - first include of every .c file of ours: feature macros that
 * must precede system headers. Every .c file includes core/banned.h as its
 * LAST include (after system headers, which declare the banned names).
 */
#ifndef YY_COMMON_H
#define YY_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#define _FILE_OFFSET_BITS 64

#define YY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define YY_UNUSED __attribute__((unused))

#endif
