// pix2struct/image/load.hpp — decode an image file into 8-bit RGB exactly as the reference sees it.
//
//   Image detail::decode_image(bytes, name, limits);  // behind load_image / load_image_from_memory (image.hpp)
//   void  save_png(image, path);                      // throws pix2struct::Error
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

// Whether the bytes hold `magic` at offset `at`.
inline bool starts_with(std::span<const std::byte> bytes, std::string_view magic, size_t at = 0) {
    return bytes.size() >= at + magic.size() && std::memcmp(bytes.data() + at, magic.data(), magic.size()) == 0;
}

// The name of a format Pillow would open but we do not read, from the file's first bytes ("" if none).
inline std::string_view unsupported_format(std::span<const std::byte> b) {
    using namespace std::string_view_literals;
    if (starts_with(b, "II*\0"sv) || starts_with(b, "MM\0*"sv)) return "TIFF";
    if (starts_with(b, "\0\0\1\0"sv)) return "ICO";
    if (starts_with(b, "\0\0\2\0"sv)) return "CUR";
    if (starts_with(b, "8BPS"sv)) return "PSD";
    if (starts_with(b, "qoif"sv)) return "QOI";
    if (starts_with(b, "DDS "sv)) return "DDS";
    if (starts_with(b, "icns"sv)) return "ICNS";
    if (starts_with(b, "\0\0\0\x0CjP  "sv) || starts_with(b, "\xFF\x4F\xFF\x51"sv)) return "JPEG 2000";
    if (b.size() >= 12 && starts_with(b, "ftyp"sv, 4)) return "HEIF/AVIF";
    if (starts_with(b, "P"sv) && b.size() >= 2 && char(b[1]) >= '1' && char(b[1]) <= '7') return "PNM (PPM/PGM/PBM)";
    if (starts_with(b, "%PDF"sv)) return "PDF";
    if (starts_with(b, "%!PS"sv)) return "PostScript";
    return {};
}

// load_image_from_memory (declared in image/image.hpp, defined by the implementation) is this function.
inline Image decode_image(std::span<const std::byte> data, std::string_view name, const ImageLimits& limits) {
    if (data.empty()) detail::fail(name, ": the file is empty, not an image");
    if (int64_t(data.size()) > limits.max_file_bytes || data.size() > size_t(INT32_MAX))
        detail::fail(name, ": the file is ", data.size(), " bytes, more than the limit of ",
                     std::min<int64_t>(limits.max_file_bytes, INT32_MAX), " (ImageLimits::max_file_bytes)");
    using detail::starts_with;
    using namespace std::string_view_literals;
    if (starts_with(data, "\xFF\xD8\xFF"sv)) return detail::jpeg::decode(data, name, limits);
    if (starts_with(data, "\x89PNG\r\n\x1A\n"sv)) return detail::png::decode(data, name, limits);
    if (starts_with(data, "GIF87a"sv) || starts_with(data, "GIF89a"sv)) return detail::gif::decode(data, name, limits);
    if (starts_with(data, "RIFF"sv) && starts_with(data, "WEBP"sv, 8)) return detail::webp::decode(data, name, limits);
    if (starts_with(data, "BM"sv)) return detail::bmp::decode(data, name, limits);
    if (const std::string_view format = detail::unsupported_format(data); !format.empty())
        detail::fail(name, ": ", format, " images are not supported (JPEG, PNG, GIF, WebP and BMP are)");
    const size_t n = std::min<size_t>(data.size(), 8);
    char head[3 * 8 + 1] = {};
    for (size_t i = 0; i < n; ++i) std::snprintf(head + 3 * i, 4, "%02x ", unsigned(data[i]));
    detail::fail(name, ": not an image in a supported format (JPEG, PNG, GIF, WebP, BMP); it starts with ",
                 std::string_view(head, 3 * n - 1));
}

}  // namespace detail

// Writes an RGB PNG (e.g. the composed header + image, to look at what the model sees).
inline void save_png(const Image& image, const std::filesystem::path& path) {
    if (image.empty() || image.rgb.size() != size_t(image.width) * image.height * 3)
        detail::fail(path.string(), ": cannot save an empty or inconsistent image (", image.width, "x",
                     image.height, ")");
    if (!stbi_write_png(path.string().c_str(), image.width, image.height, 3, image.rgb.data(), image.width * 3))
        detail::fail(path.string(), ": cannot write the PNG file");
}

}  // namespace pix2struct
