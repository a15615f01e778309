// pix2struct/image/codecs/jpeg.hpp — JPEG through libjpeg-turbo, with the settings Pillow uses.
//
// Pillow (JpegImagePlugin.py + libImaging/JpegDecode.c) decodes with libjpeg-turbo's defaults: the
// accurate integer IDCT (JDCT_ISLOW), "fancy" (triangular) chroma upsampling, block smoothing on, the
// colour space libjpeg infers from the JFIF/Adobe markers. It maps the component count to a mode (SOF
// handler): 1 -> L (out_color_space JCS_GRAYSCALE), 3 -> RGB (JCS_RGB), 4 -> CMYK (JCS_CMYK, then unpacked as
// "CMYK;I", i.e. inverted: Pillow assumes Adobe's polarity for every CMYK JPEG); other counts and
// non-8-bit samples are refused. convert("RGB") then replicates grey, and turns CMYK into RGB with
// libImaging/Convert.c's cmyk2rgb: nk = 255 - k, channel = nk - c * nk / 255 (rounded as MULDIV255).
// EXIF orientation is not applied (Pillow's open does not rotate). libjpeg's warnings on corrupt data are
// ignored as Pillow ignores them; a file that ends before its last scanline is an error (Pillow:
// "image file is truncated").
//
// libjpeg reports errors by longjmp: every function that calls it sets its own jump point and holds no
// C++ object with a destructor across the calls.
#pragma once

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <jpeglib.h>

#include "pix2struct/image/image.hpp"

namespace pix2struct::detail::jpeg {

// A valid JPEG has at most a few dozen scans; a hostile progressive file can hold millions, each one a
// pass over the whole coefficient buffer. libjpeg-turbo's own fuzzers stop at 500.
inline constexpr int kMaxScans = 500;

struct Session {
    jpeg_decompress_struct cinfo{};
    jpeg_error_mgr err{};
    jpeg_source_mgr src{};
    jpeg_progress_mgr progress{};
    std::jmp_buf jump{};
    char message[JMSG_LENGTH_MAX] = {};
    const JOCTET* data = nullptr;
    size_t size = 0;
    bool created = false;
    bool truncated = false;  // the source ran dry and a fake EOI was supplied

    ~Session() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
};

inline Session& session_of(j_common_ptr cinfo) { return *static_cast<Session*>(cinfo->client_data); }

inline void on_error(j_common_ptr cinfo) {
    Session& s = session_of(cinfo);
    (*cinfo->err->format_message)(cinfo, s.message);
    std::longjmp(s.jump, 1);
}
inline void on_output_message(j_common_ptr) {}  // warnings: ignored, as Pillow ignores them
inline void on_progress(j_common_ptr cinfo) {
    auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->input_scan_number > kMaxScans) {
        Session& s = session_of(cinfo);
        std::snprintf(s.message, sizeof s.message, "more than %d scans", kMaxScans);
        std::longjmp(s.jump, 1);
    }
}
inline void src_init(j_decompress_ptr) {}
inline void src_term(j_decompress_ptr) {}
inline boolean src_fill(j_decompress_ptr cinfo) {
    // Past the end of the bytes: note it and hand libjpeg an end-of-image marker (as jpeg_mem_src does).
    static const JOCTET eoi[2] = {0xFF, JPEG_EOI};
    Session& s = session_of(reinterpret_cast<j_common_ptr>(cinfo));
    s.truncated = true;
    cinfo->src->next_input_byte = eoi;
    cinfo->src->bytes_in_buffer = 2;
    return TRUE;
}
inline void src_skip(j_decompress_ptr cinfo, long n) {
    if (n <= 0) return;
    while (size_t(n) > cinfo->src->bytes_in_buffer) {
        n -= long(cinfo->src->bytes_in_buffer);
        src_fill(cinfo);
    }
    cinfo->src->next_input_byte += n;
    cinfo->src->bytes_in_buffer -= size_t(n);
}

// Creates the decompressor and reads the header. false: s.message says why.
inline bool read_header(Session& s) {
    if (setjmp(s.jump)) return false;
    s.cinfo.err = jpeg_std_error(&s.err);
    s.err.error_exit = on_error;
    s.err.output_message = on_output_message;
    s.cinfo.client_data = &s;
    jpeg_create_decompress(&s.cinfo);
    s.created = true;
    s.src.init_source = src_init;
    s.src.fill_input_buffer = src_fill;
    s.src.skip_input_data = src_skip;
    s.src.resync_to_restart = jpeg_resync_to_restart;
    s.src.term_source = src_term;
    s.src.next_input_byte = s.data;
    s.src.bytes_in_buffer = s.size;
    s.cinfo.src = &s.src;
    s.progress.progress_monitor = on_progress;
    s.cinfo.progress = &s.progress;
    jpeg_read_header(&s.cinfo, TRUE);
    return true;
}

// Decodes every scanline into `out` (rows of `stride` bytes). false: s.message says why.
inline bool read_pixels(Session& s, JSAMPLE* out, size_t stride) {
    if (setjmp(s.jump)) return false;
    jpeg_start_decompress(&s.cinfo);
    while (s.cinfo.output_scanline < s.cinfo.output_height && !s.truncated) {
        JSAMPROW row = out + size_t(s.cinfo.output_scanline) * stride;
        jpeg_read_scanlines(&s.cinfo, &row, 1);
    }
    return true;  // not finished: the caller reports truncation; jpeg_destroy_decompress cleans up
}

inline Image decode(std::span<const std::byte> bytes, std::string_view name, const ImageLimits& limits) {
    auto s = std::make_unique<Session>();
    s->data = reinterpret_cast<const JOCTET*>(bytes.data());
    s->size = bytes.size();
    if (!read_header(*s)) fail(name, ": not a readable JPEG (", s->message, ")");
    jpeg_decompress_struct& c = s->cinfo;
    if (c.data_precision != 8) fail(name, ": cannot handle a ", c.data_precision, "-bit JPEG (Pillow reads 8-bit only)");
    const int components = c.num_components;
    if (components == 1) c.out_color_space = JCS_GRAYSCALE;
    else if (components == 3) c.out_color_space = JCS_RGB;
    else if (components == 4) c.out_color_space = JCS_CMYK;
    else fail(name, ": cannot handle a JPEG with ", components, " components (Pillow reads 1, 3 or 4)");
    check_image_size(name, "JPEG", c.image_width, c.image_height, limits);

    const size_t w = c.image_width, h = c.image_height, n = w * h;
    Image out;
    out.width = int(w);
    out.height = int(h);
    out.rgb.resize(n * 3);
    // RGB scanlines go straight into the image; grey and CMYK through a buffer, converted below.
    std::vector<JSAMPLE> px(components == 3 ? 0 : n * size_t(components));
    JSAMPLE* rows = components == 3 ? out.rgb.data() : px.data();
    if (!read_pixels(*s, rows, w * size_t(components))) fail(name, ": cannot decode the JPEG (", s->message, ")");
    if (c.output_width != w || c.output_height != h) fail(name, ": the JPEG decoded to a size other than its header's");
    if (s->truncated) fail(name, ": the JPEG file is truncated (it ends before its last row of pixels)");

    uint8_t* o = out.rgb.data();
    if (components == 1) {
        for (size_t i = 0; i < n; ++i) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = px[i];
    } else if (components == 4) {
        auto muldiv255 = [](int a, int b) { const int t = a * b + 128; return ((t >> 8) + t) >> 8; };
        for (size_t i = 0; i < n; ++i) {
            const JSAMPLE* p = &px[4 * i];
            const int nk = p[3];  // "CMYK;I": k = 255 - p[3], so 255 - k = p[3]
            for (int ch = 0; ch < 3; ++ch) {
                const int v = nk - muldiv255(255 - p[ch], nk);
                o[3 * i + ch] = uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    return out;
}

}  // namespace pix2struct::detail::jpeg
