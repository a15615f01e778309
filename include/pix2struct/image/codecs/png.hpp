// pix2struct/image/codecs/png.hpp — PNG through libpng, converted to RGB as Pillow's convert("RGB") does.
//
// Pillow's modes per PNG layout (PngImagePlugin.py) and what convert("RGB") makes of them:
//   RGB, palette (P; its tRNS ignored), 16-bit RGB/RGBA/LA (Pillow keeps the high byte: ";16B" raw modes)
//                       -> the 8-bit colour as decoded (libpng: palette expanded, png_set_strip_16 chops);
//   RGBA / LA           -> colour (grey replicated), alpha dropped;
//   L (1, 2, 4, 8 bit)  -> grey replicated (sub-byte depths scaled by bit replication, as libpng does);
//   16-bit grey (I;16)  -> min(v, 255) replicated (Pillow's I;16 -> L conversion clips, it does not scale).
// Gamma, sRGB and ICC chunks are not applied (neither does Pillow). Only the pixels up to the last row are
// needed: a file cut after its image data still decodes, one cut inside it is an error.
// libpng reports errors by longjmp: every function that calls it sets its own jump point and holds no C++
// object with a destructor across the calls.
#pragma once

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <png.h>

#include "pix2struct/image/image.hpp"

namespace pix2struct::detail::png {

struct Session {
    png_structp png = nullptr;
    png_infop info = nullptr;
    char message[256] = {};
    const uint8_t* data = nullptr;
    size_t size = 0, at = 0;
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    size_t rowbytes = 0;

    ~Session() {
        if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
};

inline void on_error(png_structp png, png_const_charp msg) {
    auto* s = static_cast<Session*>(png_get_error_ptr(png));
    std::snprintf(s->message, sizeof s->message, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}
inline void on_warning(png_structp, png_const_charp) {}  // ancillary-chunk problems: skipped, as Pillow does
inline void on_read(png_structp png, png_bytep out, png_size_t n) {
    auto* s = static_cast<Session*>(png_get_io_ptr(png));
    if (n > s->size - s->at) png_error(png, "the file ends inside the image data (truncated)");
    std::memcpy(out, s->data + s->at, n);
    s->at += n;
}

// Creates the reader and reads everything up to the image data. false: s.message says why.
inline bool read_header(Session& s) {
    s.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, on_error, on_warning);
    if (!s.png) return std::snprintf(s.message, sizeof s.message, "out of memory"), false;
    if (setjmp(png_jmpbuf(s.png))) return false;
    s.info = png_create_info_struct(s.png);
    if (!s.info) png_error(s.png, "out of memory");
    png_set_read_fn(s.png, &s, on_read);
    png_set_user_limits(s.png, 0x7fffffff, 0x7fffffff);  // sizes are checked against ImageLimits instead
    png_set_chunk_cache_max(s.png, 1000);                // ancillary chunks kept (sPLT, text, unknown)
    png_set_chunk_malloc_max(s.png, 8 << 20);            // bytes for one ancillary chunk (zTXt, iCCP, ...)
    png_read_info(s.png, s.info);
    png_get_IHDR(s.png, s.info, &s.width, &s.height, &s.bit_depth, &s.color_type, &s.interlace, nullptr, nullptr);
    return true;
}

// Sets the transforms to 8-bit RGB (or raw 16-bit grey). false: s.message says why.
inline bool set_transforms(Session& s, bool raw_gray16) {
    if (setjmp(png_jmpbuf(s.png))) return false;
    if (!raw_gray16) {
        if (s.color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(s.png);
        if (s.color_type == PNG_COLOR_TYPE_GRAY && s.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(s.png);
        if (s.bit_depth == 16) png_set_strip_16(s.png);
        png_set_strip_alpha(s.png);  // also the alpha a palette's tRNS would add
        if (s.color_type == PNG_COLOR_TYPE_GRAY || s.color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
            png_set_gray_to_rgb(s.png);
    }
    png_set_interlace_handling(s.png);
    png_read_update_info(s.png, s.info);
    s.rowbytes = png_get_rowbytes(s.png, s.info);
    return true;
}

inline bool read_rows(Session& s, png_bytepp rows) {
    if (setjmp(png_jmpbuf(s.png))) return false;
    png_read_image(s.png, rows);
    return true;
}

inline Image decode(std::span<const std::byte> bytes, std::string_view name, const ImageLimits& limits) {
    auto s = std::make_unique<Session>();
    s->data = reinterpret_cast<const uint8_t*>(bytes.data());
    s->size = bytes.size();
    if (!read_header(*s)) fail(name, ": not a readable PNG (", s->message, ")");
    check_image_size(name, "PNG", s->width, s->height, limits);
    const bool gray16 = s->color_type == PNG_COLOR_TYPE_GRAY && s->bit_depth == 16;
    if (!set_transforms(*s, gray16)) fail(name, ": cannot decode the PNG (", s->message, ")");
    const size_t w = s->width, h = s->height, want_rowbytes = w * (gray16 ? 2 : 3);
    if (s->rowbytes != want_rowbytes) fail(name, ": unexpected PNG row layout (", s->rowbytes, " bytes a row)");

    std::vector<uint8_t> px(want_rowbytes * h);
    std::vector<png_bytep> rows(h);
    for (size_t y = 0; y < h; ++y) rows[y] = px.data() + y * want_rowbytes;
    if (!read_rows(*s, rows.data())) fail(name, ": cannot decode the PNG (", s->message, ")");

    Image out;
    out.width = int(w);
    out.height = int(h);
    if (!gray16) {
        out.rgb = std::move(px);
        return out;
    }
    out.rgb.resize(w * h * 3);
    for (size_t i = 0; i < w * h; ++i) {  // big-endian samples; I;16 -> L clips at 255
        const unsigned v = unsigned(px[2 * i]) << 8 | px[2 * i + 1];
        out.rgb[3 * i] = out.rgb[3 * i + 1] = out.rgb[3 * i + 2] = uint8_t(std::min(v, 255u));
    }
    return out;
}

}  // namespace pix2struct::detail::png
