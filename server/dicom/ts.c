/* ts.c - see ts.h. */
#include "core/common.h"

#include <stddef.h>
#include <string.h>

#include "dicom/ts.h"
#include "core/banned.h"

#define OCTET "application/octet-stream"

static const struct ts_info g_ts[] = {
    {UID_IMPLICIT_LE, "ImplicitVRLittleEndian", OCTET, TS_IMPLICIT},
    {UID_EXPLICIT_LE, "ExplicitVRLittleEndian", OCTET, 0},
    {"1.2.840.10008.1.2.1.98", "EncapsulatedUncompressedExplicitVRLittleEndian", OCTET,
     TS_ENCAPS},
    {UID_DEFLATED_LE, "DeflatedExplicitVRLittleEndian", OCTET, TS_DEFLATED},
    {UID_EXPLICIT_BE, "ExplicitVRBigEndian", OCTET, TS_BIG | TS_RETIRED},
    {"1.2.840.10008.1.2.4.50", "JPEGBaseline8Bit", "image/jpeg", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.51", "JPEGExtended12Bit", "image/jpeg", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.57", "JPEGLossless", "image/jpeg", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.70", "JPEGLosslessSV1", "image/jpeg", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.80", "JPEGLSLossless", "image/jls", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.81", "JPEGLSNearLossless", "image/jls", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.90", "JPEG2000Lossless", "image/jp2", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.91", "JPEG2000", "image/jp2", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.92", "JPEG2000MCLossless", "image/jpx", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.93", "JPEG2000MC", "image/jpx", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.100", "MPEG2MPML", "video/mpeg", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.101", "MPEG2MPHL", "video/mpeg", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.102", "MPEG4HP41", "video/mp4", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.103", "MPEG4HP41BD", "video/mp4", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.104", "MPEG4HP422D", "video/mp4", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.105", "MPEG4HP423D", "video/mp4", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.106", "MPEG4HP42STEREO", "video/mp4", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.107", "HEVCMP51", "video/H265", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.108", "HEVCM10P51", "video/H265", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.110", "JPEGXLLossless", "image/jxl", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.111", "JPEGXLJPEGRecompression", "image/jxl", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.112", "JPEGXL", "image/jxl", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.4.201", "HTJ2KLossless", "image/jphc", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.202", "HTJ2KLosslessRPCL", "image/jphc", TS_ENCAPS},
    {"1.2.840.10008.1.2.4.203", "HTJ2K", "image/jphc", TS_ENCAPS | TS_LOSSY},
    {"1.2.840.10008.1.2.5", "RLELossless", "image/dicom-rle", TS_ENCAPS},
    {"1.2.840.10008.1.2.8.1", "DeflatedImageFrameCompression", "application/octet-stream",
     TS_ENCAPS},
};

const struct ts_info *ts_lookup(const char *uid)
{
    for (size_t i = 0; i < YY_ARRAY_LEN(g_ts); i++)
        if (strcmp(g_ts[i].uid, uid) == 0)
            return &g_ts[i];
    return NULL;
}

unsigned ts_flags_of(const char *uid)
{
    const struct ts_info *t = ts_lookup(uid);
    return t ? t->flags : TS_ENCAPS;
}

unsigned ts_count(void)
{
    return (unsigned)YY_ARRAY_LEN(g_ts);
}

const struct ts_info *ts_at(unsigned i)
{
    return i < YY_ARRAY_LEN(g_ts) ? &g_ts[i] : NULL;
}
