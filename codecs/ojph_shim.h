/*
 * ojph_shim.h - the C interface to OpenJPH (HTJ2K encoding). ojph_shim.cc
 * catches every C++ exception and returns a negative errno instead.
 */
#ifndef YY_OJPH_SHIM_H
#define YY_OJPH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Encodes cols x rows x spp samples (interleaved int32, borrowed) of prec
 * bits (signed when is_signed) as a lossless HTJ2K codestream (reversible
 * 5/3, RCT when rct is set). On success *out is malloc'ed (caller frees)
 * and holds *out_len bytes. Returns 0, -EINVAL (err set), -ENOMEM.
 */
int ojph_shim_encode(unsigned cols, unsigned rows, unsigned spp, unsigned prec, int is_signed,
                     int rct, const int32_t *samples, uint8_t **out, size_t *out_len, char *err,
                     size_t err_cap);

#ifdef __cplusplus
}
#endif

#endif
