/*
 * gdcm_shim.cc - see gdcm_shim.h. The project's only C++: GDCM's JPEG codec
 * (its own IJG 6b with the lossless patches, 8/12/16-bit builds) used the
 * way gdcm::Bitmap::TryJPEGCodec uses it, so our output is gdcmconv's.
 *
 * Every entry point catches every exception. GDCM's trace output (warnings
 * on stderr) is switched off once; that is the only global state touched.
 */
#include "core/common.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <sstream>
#include <string>

#include <gdcmJPEGCodec.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

#include "gdcm_shim.h"
#include "core/banned.h"

namespace
{

/* Exposes the protected stream decoder (what JPEGCodec::Decode calls for a
 * single fragment, without its fragment-guessing fallback). */
class ShimJPEG : public gdcm::JPEGCodec
{
  public:
    using gdcm::JPEGCodec::DecodeByStreams;
};

void quiet_gdcm()
{
    static std::once_flag once;
    std::call_once(once, [] {
        gdcm::Trace::DebugOff();
        gdcm::Trace::WarningOff();
        gdcm::Trace::ErrorOff();
    });
}

/* Our own mapping: GDCM's GetPIType() reads before the string when empty. */
gdcm::PhotometricInterpretation::PIType pi_type(const char *s, unsigned spp)
{
    typedef gdcm::PhotometricInterpretation P;
    static const struct {
        const char *name;
        P::PIType type;
    } known[] = {
        {"MONOCHROME1", P::MONOCHROME1},
        {"MONOCHROME2", P::MONOCHROME2},
        {"PALETTE COLOR", P::PALETTE_COLOR},
        {"RGB", P::RGB},
        {"YBR_FULL", P::YBR_FULL},
        {"YBR_FULL_422", P::YBR_FULL_422},
        {"YBR_PARTIAL_422", P::YBR_PARTIAL_422},
        {"YBR_ICT", P::YBR_ICT},
        {"YBR_RCT", P::YBR_RCT},
    };
    std::string v = s ? s : "";
    while (!v.empty() && (v.back() == ' ' || v.back() == '\0'))
        v.pop_back();
    size_t b = v.find_first_not_of(' ');
    v = b == std::string::npos ? std::string() : v.substr(b);
    for (const auto &k : known)
        if (v == k.name) {
            bool colour =
                k.type != P::MONOCHROME1 && k.type != P::MONOCHROME2 && k.type != P::PALETTE_COLOR;
            if (colour == (spp == 3))
                return k.type;
        }
    return spp == 3 ? P::RGB : P::MONOCHROME2;
}

void set_err(char *err, size_t cap, const char *msg)
{
    if (err && cap)
        snprintf(err, cap, "%s", msg);
}

int jpeg_decode(const struct gdcm_shim_image *img, const uint8_t *data, size_t len, uint8_t *out,
                size_t out_cap, size_t *out_len, unsigned *sample_bytes, char *err, size_t err_cap)
{
    if (img->spp != 1 && img->spp != 3)
        return -EINVAL;
    if ((img->bits_alloc != 8 && img->bits_alloc != 16) || !img->bits_stored ||
        img->bits_stored > img->bits_alloc || img->pixrep > 1 || img->planar > 1 || !img->rows ||
        !img->cols || len > 0x7fffffff)
        return -EINVAL;
    quiet_gdcm();
    unsigned bs = img->bits_stored;
    unsigned hb = img->high_bit < bs ? img->high_bit : bs - 1; /* GDCM asserts hb < bs */
    gdcm::PixelFormat pf((unsigned short)img->spp, (unsigned short)img->bits_alloc,
                         (unsigned short)bs, (unsigned short)hb, (unsigned short)img->pixrep);
    gdcm::PhotometricInterpretation pi(pi_type(img->photometric, img->spp));
    std::string in(reinterpret_cast<const char *>(data), len);

    /* 1. header pass, as gdcm::Bitmap::TryJPEGCodec(NULL) */
    {
        gdcm::JPEGCodec hc;
        hc.SetPixelFormat(pf);
        std::stringstream ss(in);
        gdcm::TransferSyntax ts2;
        if (!hc.GetHeaderInfo(ss, ts2)) {
            set_err(err, err_cap, "gdcm: cannot read JPEG header");
            return -EBADMSG;
        }
        const unsigned *d = hc.GetDimensions();
        if (d[0] != img->cols || d[1] != img->rows) {
            set_err(err, err_cap, "gdcm: JPEG dimensions differ from the dataset");
            return -EBADMSG;
        }
        const gdcm::PixelFormat &cpf = hc.GetPixelFormat();
        /* "Encapsulated stream has fewer bits actually stored on disk" */
        if (cpf.GetBitsAllocated() <= pf.GetBitsAllocated() &&
            cpf.GetPixelRepresentation() == pf.GetPixelRepresentation() &&
            cpf.GetSamplesPerPixel() == pf.GetSamplesPerPixel() &&
            cpf.GetBitsStored() < pf.GetBitsStored()) {
            pf.SetBitsAllocated(cpf.GetBitsAllocated() == 12 ? 16 : cpf.GetBitsAllocated());
            pf.SetBitsStored(cpf.GetBitsStored());
            if (pf.GetHighBit() >= pf.GetBitsStored())
                pf.SetHighBit((unsigned short)(pf.GetBitsStored() - 1));
        }
    }

    /* 2. decode, as gdcm::Bitmap::TryJPEGCodec(buffer) */
    ShimJPEG c;
    unsigned dims[3] = {img->cols, img->rows, 1};
    c.SetNumberOfDimensions(2);
    c.SetDimensions(dims);
    c.SetPlanarConfiguration(img->planar);
    c.SetPhotometricInterpretation(pi);
    c.SetPixelFormat(pf);
    c.SetNeedOverlayCleanup(pf.GetBitsAllocated() != pf.GetBitsStored());
    std::stringstream is(in);
    std::stringstream os;
    if (!c.DecodeByStreams(is, os)) {
        set_err(err, err_cap, "gdcm: JPEG decoding failed");
        return -EBADMSG;
    }
    const std::string s = os.str();
    unsigned sb = c.GetPixelFormat().GetBitsAllocated() <= 8 ? 1 : 2;
    size_t want = (size_t)img->rows * img->cols * img->spp * sb;
    if (s.size() < want) {
        set_err(err, err_cap, "gdcm: JPEG decoded to fewer bytes than the frame");
        return -EBADMSG;
    }
    if (want > out_cap)
        return -E2BIG;
    memcpy(out, s.data(), want);
    *out_len = want;
    *sample_bytes = sb;
    return 0;
}

} // namespace

extern "C" int gdcm_shim_jpeg_decode(const struct gdcm_shim_image *img, const uint8_t *data,
                                     size_t len, uint8_t *out, size_t out_cap, size_t *out_len,
                                     unsigned *sample_bytes, char *err, size_t err_cap)
{
    try {
        if (!img || !data || !out || !out_len || !sample_bytes)
            return -EINVAL;
        return jpeg_decode(img, data, len, out, out_cap, out_len, sample_bytes, err, err_cap);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    } catch (...) {
        set_err(err, err_cap, "gdcm: exception while decoding JPEG");
        return -EBADMSG;
    }
}
