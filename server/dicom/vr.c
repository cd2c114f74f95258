/* vr.c - see vr.h. */
#include "core/common.h"

#include "dicom/vr.h"
#include "core/banned.h"

bool vr_is_known(uint16_t vr)
{
    switch (vr) {
    case VR_AE: case VR_AS: case VR_AT: case VR_CS: case VR_DA: case VR_DS: case VR_DT:
    case VR_FL: case VR_FD: case VR_IS: case VR_LO: case VR_LT: case VR_OB: case VR_OD:
    case VR_OF: case VR_OL: case VR_OV: case VR_OW: case VR_PN: case VR_SH: case VR_SL:
    case VR_SQ: case VR_SS: case VR_ST: case VR_SV: case VR_TM: case VR_UC: case VR_UI:
    case VR_UL: case VR_UN: case VR_UR: case VR_US: case VR_UT: case VR_UV:
        return true;
    default:
        return false;
    }
}

bool vr_has_long_length(uint16_t vr)
{
    switch (vr) {
    case VR_OB: case VR_OD: case VR_OF: case VR_OL: case VR_OV: case VR_OW: case VR_SQ:
    case VR_SV: case VR_UC: case VR_UN: case VR_UR: case VR_UT: case VR_UV:
        return true;
    default:
        return false;
    }
}

bool vr_is_string(uint16_t vr)
{
    switch (vr) {
    case VR_AE: case VR_AS: case VR_CS: case VR_DA: case VR_DS: case VR_DT: case VR_IS:
    case VR_LO: case VR_LT: case VR_PN: case VR_SH: case VR_ST: case VR_TM: case VR_UC:
    case VR_UI: case VR_UR: case VR_UT:
        return true;
    default:
        return false;
    }
}

bool vr_uses_charset(uint16_t vr)
{
    switch (vr) {
    case VR_SH: case VR_LO: case VR_ST: case VR_LT: case VR_UC: case VR_UT: case VR_PN:
        return true;
    default:
        return false;
    }
}

bool vr_is_bulk_binary(uint16_t vr)
{
    switch (vr) {
    case VR_OB: case VR_OD: case VR_OF: case VR_OL: case VR_OV: case VR_OW: case VR_UN:
        return true;
    default:
        return false;
    }
}

unsigned vr_numeric_size(uint16_t vr)
{
    switch (vr) {
    case VR_SS: case VR_US:
        return 2;
    case VR_AT: case VR_FL: case VR_SL: case VR_UL:
        return 4;
    case VR_FD: case VR_SV: case VR_UV:
        return 8;
    default:
        return 0;
    }
}

unsigned vr_swap_unit(uint16_t vr)
{
    switch (vr) {
    case VR_AT: case VR_OW: case VR_SS: case VR_US:
        return 2;
    case VR_FL: case VR_SL: case VR_UL: case VR_OF: case VR_OL:
        return 4;
    case VR_FD: case VR_SV: case VR_UV: case VR_OD: case VR_OV:
        return 8;
    default:
        return 1;
    }
}

void vr_name(uint16_t vr, char out[3])
{
    out[0] = (char)(vr >> 8);
    out[1] = (char)(vr & 0xff);
    out[2] = '\0';
}

uint16_t vr_from_name(const char *s)
{
    if (!s[0] || !s[1])
        return VR_NONE;
    uint16_t vr = VR_CODE(s[0], s[1]);
    return vr_is_known(vr) ? vr : VR_NONE;
}
