// pix2struct/image/load.hpp — decode an image file into 8-bit RGB exactly as the reference sees it.
//
//   Image load_image(path, limits = {});                          // throws pix2struct::Error
//   Image load_image_from_memory(bytes, name, limits = {});       // `name` is used in error messages
//   void  save_png(image, path);                                  // throws pix2struct::Error
//
// The reference opens the file with Pillow (`Image.open`) and calls transformers'
// `image_transforms.convert_to_rgb`, which in transformers 4.57.6 is
//     if image.mode == "RGB": return image
//     return image.convert("RGB")
// i.e. Pillow's mode conversion, *not* an alpha composite: alpha is dropped, palettes are looked up, grey
// is replicated. EXIF orientation is not applied (Pillow's `open` does not rotate either).
// The format is told by the file's first bytes, as Pillow tells it, and each is decoded by a library made
// for untrusted input, set up as Pillow sets it up (each codec's header says how):
//   JPEG  libjpeg-turbo   codecs/jpeg.hpp      PNG   libpng          codecs/png.hpp
//   GIF   giflib          codecs/gif.hpp       WebP  libwebp         codecs/webp.hpp
//   BMP   stb_image       codecs/bmp.hpp
// Other formats Pillow opens (TIFF, ICO, PPM, ...) are an Error naming the file and the format.
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include <stb_image_write.h>

#include "pix2struct/error.hpp"
#include "pix2struct/image/codecs/bmp.hpp"
#include "pix2struct/image/codecs/gif.hpp"
#include "pix2struct/image/codecs/jpeg.hpp"
#include "pix2struct/image/codecs/png.hpp"
#include "pix2struct/image/codecs/webp.hpp"
#include "pix2struct/image/image.hpp"

namespace pix2struct {

namespace detail {

// The name of a format Pillow would open but we do not read, from the file's first bytes ("" if none).
inline std::string_view unsupported_format(const uint8_t* b, size_t n) {
    auto starts = [&](std::string_view magic) { return n >= magic.size() && std::memcmp(b, magic.data(), magic.size()) == 0; };
    using namespace std::string_view_literals;
    if (starts("II*\0"sv) || starts("MM\0*"sv)) return "TIFF";
    if (starts("\0\0\1\0"sv)) return "ICO";
    if (starts("\0\0\2\0"sv)) return "CUR";
    if (starts("8BPS"sv)) return "PSD";
    if (starts("qoif"sv)) return "QOI";
    if (starts("DDS "sv)) return "DDS";
    if (starts("icns"sv)) return "ICNS";
    if (starts("\0\0\0\x0CjP  "sv) || starts("\xFF\x4F\xFF\x51"sv)) return "JPEG 2000";
    if (n >= 12 && std::memcmp(b + 4, "ftyp", 4) == 0) return "HEIF/AVIF";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return "PNM (PPM/PGM/PBM)";
    if (starts("%PDF"sv)) return "PDF";
    if (starts("%!PS"sv)) return "PostScript";
    return {};
}

}  // namespace detail

inline Image load_image_from_memory(std::span<const std::byte> data, std::string_view name,
                                    const ImageLimits& limits = {}) {
    if (data.empty()) detail::fail(name, ": the file is empty, not an image");
    if (int64_t(data.size()) > limits.max_file_bytes || data.size() > size_t(INT32_MAX))
        detail::fail(name, ": the file is ", data.size(), " bytes, more than the limit of ",
                     std::min<int64_t>(limits.max_file_bytes, INT32_MAX), " (ImageLimits::max_file_bytes)");
    const auto* b = reinterpret_cast<const uint8_t*>(data.data());
    const size_t n = data.size();
    auto starts = [&](const char* magic, size_t len, size_t at = 0) {
        return n >= at + len && std::memcmp(b + at, magic, len) == 0;
    };
    if (starts("\xFF\xD8\xFF", 3)) return detail::jpeg::decode(data, name, limits);
    if (starts("\x89PNG\r\n\x1A\n", 8)) return detail::png::decode(data, name, limits);
    if (starts("GIF87a", 6) || starts("GIF89a", 6)) return detail::gif::decode(data, name, limits);
    if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return detail::webp::decode(data, name, limits);
    if (starts("BM", 2)) return detail::bmp::decode(data, name, limits);
    if (const std::string_view format = detail::unsupported_format(b, n); !format.empty())
        detail::fail(name, ": ", format, " images are not supported (JPEG, PNG, GIF, WebP and BMP are)");
    char head[3 * 8 + 1] = {};
    for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) std::snprintf(head + 3 * i, 4, "%02x ", b[i]);
    detail::fail(name, ": not an image in a supported format (JPEG, PNG, GIF, WebP, BMP); it starts with ",
                 std::string_view(head, 3 * std::min<size_t>(n, 8) - 1));
}

inline Image load_image(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    return load_image_from_memory(detail::read_whole_file(path, "the image file", limits.max_file_bytes), path.string(),
                                  limits);
}

// Writes an RGB PNG (e.g. the composed header + image, to look at what the model sees).
inline void save_png(const Image& image, const std::filesystem::path& path) {
    if (image.empty() || image.rgb.size() != size_t(image.width) * image.height * 3)
        detail::fail(path.string(), ": cannot save an empty or inconsistent image (", image.width, "x",
                     image.height, ")");
    if (!stbi_write_png(path.string().c_str(), image.width, image.height, 3, image.rgb.data(), image.width * 3))
        detail::fail(path.string(), ": cannot write the PNG file");
}

}  // namespace pix2struct
