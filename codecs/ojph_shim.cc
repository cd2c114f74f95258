/*
 * ojph_shim.cc - see ojph_shim.h. OpenJPH reports errors by calling its
 * error handler, which must throw; ours throws without printing. The
 * handlers are installed once (OpenJPH keeps them in globals) and never
 * change afterwards.
 */
#include "core/common.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include <openjph/ojph_arch.h>
#include <openjph/ojph_codestream.h>
#include <openjph/ojph_file.h>
#include <openjph/ojph_mem.h>
#include <openjph/ojph_message.h>
#include <openjph/ojph_params.h>

#include "ojph_shim.h"
#include "core/banned.h"

namespace
{

class quiet_info : public ojph::message_info
{
  public:
    void operator()(int, const char *, int, const char *, ...) override
    {
    }
};

class quiet_warning : public ojph::message_warning
{
  public:
    void operator()(int, const char *, int, const char *, ...) override
    {
    }
};

class throwing_error : public ojph::message_error
{
  public:
    void operator()(int code, const char *, int, const char *fmt, ...) override
    {
        char msg[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        (void)code;
        throw std::runtime_error(msg);
    }
};

void configure_once()
{
    static std::once_flag once;
    static quiet_info info;
    static quiet_warning warning;
    static throwing_error error;
    std::call_once(once, [] {
        ojph::configure_info(&info);
        ojph::configure_warning(&warning);
        ojph::configure_error(&error);
    });
}

/* A growable in-memory output (OpenJPH's mem_outfile is avoided: we want
 * our own bound on the size). */
class vec_outfile : public ojph::outfile_base
{
  public:
    size_t write(const void *ptr, size_t size) override
    {
        if (size > ((size_t)1 << 31) - data.size())
            throw std::runtime_error("HTJ2K output too large");
        const ojph::ui8 *p = static_cast<const ojph::ui8 *>(ptr);
        data.insert(data.end(), p, p + size);
        return size;
    }
    ojph::si64 tell() override
    {
        return (ojph::si64)data.size();
    }
    std::vector<ojph::ui8> data;
};

int encode(unsigned cols, unsigned rows, unsigned spp, unsigned prec, int is_signed, int rct,
           const int32_t *samples, uint8_t **out, size_t *out_len)
{
    configure_once();
    ojph::codestream cs;
    ojph::param_siz siz = cs.access_siz();
    siz.set_image_extent(ojph::point(cols, rows));
    siz.set_num_components(spp);
    for (unsigned c = 0; c < spp; c++)
        siz.set_component(c, ojph::point(1, 1), prec, is_signed != 0);
    siz.set_image_offset(ojph::point(0, 0));
    siz.set_tile_size(ojph::size(cols, rows));
    siz.set_tile_offset(ojph::point(0, 0));
    ojph::param_cod cod = cs.access_cod();
    unsigned minside = cols < rows ? cols : rows, levels = 0;
    while (levels < 5 && (2u << levels) <= minside)
        levels++;
    cod.set_num_decomposition(levels);
    cod.set_block_dims(64, 64);
    cod.set_progression_order("RPCL");
    cod.set_color_transform(rct != 0 && spp == 3);
    cod.set_reversible(true);
    cs.set_planar(false);
    vec_outfile file;
    cs.write_headers(&file);

    std::vector<unsigned> row(spp, 0);
    ojph::ui32 next = 0;
    ojph::line_buf *line = cs.exchange(nullptr, next);
    for (size_t k = 0; k < (size_t)rows * spp; k++) {
        if (next >= spp || row[next] >= rows || !line || line->size < cols)
            throw std::runtime_error("unexpected line request");
        const int32_t *src = samples + (size_t)row[next] * cols * spp + next;
        for (unsigned x = 0; x < cols; x++)
            line->i32[x] = src[(size_t)x * spp];
        for (size_t x = cols; x < line->size; x++)
            line->i32[x] = 0;
        row[next]++;
        line = cs.exchange(line, next);
    }
    cs.flush();
    cs.close();
    uint8_t *buf = static_cast<uint8_t *>(malloc(file.data.size() ? file.data.size() : 1));
    if (!buf)
        return -ENOMEM;
    memcpy(buf, file.data.data(), file.data.size());
    *out = buf;
    *out_len = file.data.size();
    return 0;
}

} // namespace

extern "C" int ojph_shim_encode(unsigned cols, unsigned rows, unsigned spp, unsigned prec,
                                int is_signed, int rct, const int32_t *samples, uint8_t **out,
                                size_t *out_len, char *err, size_t err_cap)
{
    try {
        if (!cols || !rows || (spp != 1 && spp != 3) || prec < 1 || prec > 16 || !samples || !out ||
            !out_len)
            return -EINVAL;
        return encode(cols, rows, spp, prec, is_signed, rct, samples, out, out_len);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    } catch (const std::exception &e) {
        if (err && err_cap)
            snprintf(err, err_cap, "htj2k encode: %s", e.what());
        return -EINVAL;
    } catch (...) {
        if (err && err_cap)
            snprintf(err, err_cap, "htj2k encode: unknown exception");
        return -EINVAL;
    }
}
