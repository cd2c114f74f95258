/*
 * vr.h - DICOM Value Representations (PS3.5 6.2) as 16-bit codes.
 *
 * A VR is stored as its two ASCII letters packed big-end first, so VR_OB is
 * ('O' << 8 | 'B') and vr_name() is two chars. Pure functions, no state.
 */
#ifndef YY_VR_H
#define YY_VR_H

#include <stdbool.h>
#include <stdint.h>

#define VR_CODE(a, b) ((uint16_t)(((unsigned)(a) << 8) | (unsigned)(b)))

enum {
    VR_NONE = 0,
    VR_AE = VR_CODE('A', 'E'), VR_AS = VR_CODE('A', 'S'), VR_AT = VR_CODE('A', 'T'),
    VR_CS = VR_CODE('C', 'S'), VR_DA = VR_CODE('D', 'A'), VR_DS = VR_CODE('D', 'S'),
    VR_DT = VR_CODE('D', 'T'), VR_FL = VR_CODE('F', 'L'), VR_FD = VR_CODE('F', 'D'),
    VR_IS = VR_CODE('I', 'S'), VR_LO = VR_CODE('L', 'O'), VR_LT = VR_CODE('L', 'T'),
    VR_OB = VR_CODE('O', 'B'), VR_OD = VR_CODE('O', 'D'), VR_OF = VR_CODE('O', 'F'),
    VR_OL = VR_CODE('O', 'L'), VR_OV = VR_CODE('O', 'V'), VR_OW = VR_CODE('O', 'W'),
    VR_PN = VR_CODE('P', 'N'), VR_SH = VR_CODE('S', 'H'), VR_SL = VR_CODE('S', 'L'),
    VR_SQ = VR_CODE('S', 'Q'), VR_SS = VR_CODE('S', 'S'), VR_ST = VR_CODE('S', 'T'),
    VR_SV = VR_CODE('S', 'V'), VR_TM = VR_CODE('T', 'M'), VR_UC = VR_CODE('U', 'C'),
    VR_UI = VR_CODE('U', 'I'), VR_UL = VR_CODE('U', 'L'), VR_UN = VR_CODE('U', 'N'),
    VR_UR = VR_CODE('U', 'R'), VR_US = VR_CODE('U', 'S'), VR_UT = VR_CODE('U', 'T'),
    VR_UV = VR_CODE('U', 'V'),
};

/* True for the 34 VRs of PS3.5 table 6.2-1. */
bool vr_is_known(uint16_t vr);
/* Explicit VR encoding with a 2-byte reserved field and 4-byte length
 * (OB OD OF OL OV OW SQ SV UC UN UR UT UV). */
bool vr_has_long_length(uint16_t vr);
/* Character string VRs whose value is text (AE..UT, excluding AT). */
bool vr_is_string(uint16_t vr);
/* String VRs affected by Specific Character Set (SH LO ST LT UC UT PN). */
bool vr_uses_charset(uint16_t vr);
/* Binary VRs carried as InlineBinary/BulkDataURI in JSON (OB OD OF OL OV OW UN). */
bool vr_is_bulk_binary(uint16_t vr);
/* Size of one value for fixed-size numeric VRs (AT=4, FL=4, FD=8, SL=4,
 * SS=2, SV=8, UL=4, US=2, UV=8), else 0. Also the byte-swap unit. */
unsigned vr_numeric_size(uint16_t vr);
/* Byte-swap unit for big endian data: numeric size, OW=2, OF/OL=4,
 * OD/OV=8, AT=2 (two 16-bit halves), else 1. */
unsigned vr_swap_unit(uint16_t vr);
/* Two-letter name into out[3]. */
void vr_name(uint16_t vr, char out[3]);
/* Parses two letters; returns VR_NONE when not a known VR. */
uint16_t vr_from_name(const char *s);

#endif
