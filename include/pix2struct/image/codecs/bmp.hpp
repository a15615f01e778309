// pix2struct/image/codecs/bmp.hpp — BMP through stb_image, after our own check of its header.
//
// Pillow (BmpImagePlugin.py) reads 1-, 4-, 8-, 24- and 32-bit BMPs to the same 8-bit colours stb_image gives
// (palettes looked up, 8-bit channel masks taken as they are, alpha dropped by convert("RGB")). Two kinds
// are refused with a clear error rather than decoded differently: 16-bit BMPs (Pillow scales 5- and 6-bit
// channels by v*255/31 and v*255/63, stb_image by bit replication, which differ by a level) and RLE
// compression (stb_image does not read it). The header is read here first, so that the size limit is
// checked before stb_image allocates and a file stb_image would not take as a BMP never reaches its other
// decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string_view>

#include <stb_image.h>

#include "pix2struct/image/image.hpp"

namespace pix2struct::detail::bmp {

inline Image decode(std::span<const std::byte> bytes, std::string_view name, const ImageLimits& limits) {
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t size = bytes.size();
    auto u16 = [&](size_t at) { return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8; };
    auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
    if (size < 26) fail(name, ": not a readable BMP (", size, " bytes, shorter than its headers)");
    const uint32_t header = u32(14);
    if (header != 12 && header != 40 && header != 56 && header != 108 && header != 124)
        fail(name, ": unsupported BMP header (", header, " bytes; BMP versions with 12, 40, 56, 108 or 124 are read)");
    int64_t width = 0, height = 0;
    uint32_t bits = 0, compression = 0;
    if (header == 12) {
        width = u16(18), height = u16(20), bits = u16(24);
    } else {
        if (size < 34) fail(name, ": not a readable BMP (", size, " bytes, shorter than its headers)");
        width = int32_t(u32(18)), height = std::abs(int64_t(int32_t(u32(22)))), bits = u16(28), compression = u32(30);
    }
    check_image_size(name, "BMP", width, height, limits);
    if (compression == 1 || compression == 2) fail(name, ": RLE-compressed BMP files are not supported");
    if (bits == 16) fail(name, ": 16-bit BMP files are not supported (their colours would differ from Pillow's)");
    if (bits != 1 && bits != 4 && bits != 8 && bits != 24 && bits != 32)
        fail(name, ": unsupported BMP bit depth ", bits, " (1, 4, 8, 24 and 32 are read)");

    struct Free {
        void operator()(stbi_uc* p) const { stbi_image_free(p); }
    };
    int w = 0, h = 0, channels = 0;
    std::unique_ptr<stbi_uc, Free> px(stbi_load_from_memory(b, int(size), &w, &h, &channels, 3));
    if (!px) {
        const char* why = stbi_failure_reason();
        fail(name, ": cannot decode the BMP (", why ? why : "unknown reason", ")");
    }
    if (w != width || h != height) fail(name, ": the BMP decoded to a size other than its header's");
    Image out;
    out.width = w;
    out.height = h;
    out.rgb.assign(px.get(), px.get() + size_t(w) * h * 3);
    return out;
}

}  // namespace pix2struct::detail::bmp
