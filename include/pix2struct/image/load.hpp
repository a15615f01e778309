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
// i.e. Pillow's mode conversion, *not* an alpha composite (the alpha channel is dropped, as Pillow's
// RGBA->RGB and LA->RGB converters do). Per source layout, Pillow gives:
//   RGB, palette (P, its transparency ignored), 16-bit RGB/RGBA/LA (Pillow keeps the high byte)
//                       -> the 8-bit colour as decoded;
//   RGBA / LA           -> colour (grey replicated), alpha dropped;
//   L (1, 2, 4, 8 bit)  -> grey replicated to R, G and B;
//   16-bit grey (I;16)  -> min(v, 255) replicated (Pillow's I;16 -> L conversion clips, it does not scale).
// EXIF orientation is not applied (Pillow's `open` does not rotate either).
// Decoding uses stb_image (PNG, JPEG, BMP, GIF, TGA, PSD, HDR-less); stb's JPEG decoder is not libjpeg-turbo
// and may differ from Pillow by a level or so on some pixels (tests/test_image_load.cpp measures it).
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <stb_image.h>
#include <stb_image_write.h>

#include "pix2struct/error.hpp"

namespace pix2struct {

// An 8-bit RGB image, rows top to bottom, pixels interleaved: rgb[(y * width + x) * 3 + c].
struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // [height][width][3]

    bool empty() const { return width == 0 || height == 0; }
    const uint8_t* pixel(int x, int y) const { return rgb.data() + (size_t(y) * width + x) * 3; }
};

// Decoded-size guard: files declaring more pixels than this are rejected before any decoding.
struct ImageLimits {
    int64_t max_pixels = 100'000'000;
};

namespace detail {

struct StbFree {
    void operator()(void* p) const { stbi_image_free(p); }
};

// A whole file's bytes; `what` names it in the errors ("the image file", "the header font").
inline std::vector<std::byte> read_whole_file(const std::filesystem::path& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(path.string(), ": cannot open ", what);
    const std::streamoff size = in.tellg();
    if (size < 0) fail(path.string(), ": cannot read ", what);
    std::vector<std::byte> data(static_cast<size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) fail(path.string(), ": cannot read ", what);
    return data;
}

inline std::string stb_reason() {
    const char* why = stbi_failure_reason();
    return why ? std::string(why) : std::string("unknown reason");
}

}  // namespace detail

inline Image load_image_from_memory(std::span<const std::byte> data, std::string_view name,
                                    const ImageLimits& limits = {}) {
    if (data.empty()) detail::fail(name, ": the file is empty, not an image");
    if (data.size() > size_t(INT32_MAX)) detail::fail(name, ": the file is larger than 2 GiB");
    const auto* bytes = reinterpret_cast<const stbi_uc*>(data.data());
    const int size = static_cast<int>(data.size());

    // A PNG's declared size is read directly: stb refuses very large PNGs with a vague "unknown image
    // type", and the limit below should be the error the user sees.
    static constexpr unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size >= 24 && std::equal(kPng, kPng + 8, bytes) && std::equal(bytes + 12, bytes + 16, "IHDR")) {
        auto be32 = [&](int at) { return int64_t(bytes[at]) << 24 | int64_t(bytes[at + 1]) << 16 | bytes[at + 2] << 8 | bytes[at + 3]; };
        const int64_t w = be32(16), h = be32(20);
        if (w * h > limits.max_pixels)
            detail::fail(name, ": the image is ", w, "x", h, " = ", w * h, " pixels, more than the limit of ",
                         limits.max_pixels, " (ImageLimits::max_pixels)");
    }

    // Header first: reject unknown formats and oversized images before allocating anything.
    int width = 0, height = 0, channels = 0;
    if (!stbi_info_from_memory(bytes, size, &width, &height, &channels))
        detail::fail(name, ": not a readable image (", detail::stb_reason(), ")");
    if (width <= 0 || height <= 0) detail::fail(name, ": the image has no pixels (", width, "x", height, ")");
    if (int64_t(width) * height > limits.max_pixels)
        detail::fail(name, ": the image is ", width, "x", height, " = ", int64_t(width) * height,
                     " pixels, more than the limit of ", limits.max_pixels, " (ImageLimits::max_pixels)");

    Image out;
    out.width = width;
    out.height = height;
    out.rgb.resize(size_t(width) * height * 3);
    const size_t n = size_t(width) * height;

    if (stbi_is_16_bit_from_memory(bytes, size) && channels == 1) {
        // 16-bit grey opens as Pillow mode I;16; convert("RGB") goes through L, clipping at 255.
        int w = 0, h = 0, c = 0;
        std::unique_ptr<stbi_us, detail::StbFree> px(stbi_load_16_from_memory(bytes, size, &w, &h, &c, 1));
        if (!px) detail::fail(name, ": cannot decode the image (", detail::stb_reason(), ")");
        for (size_t i = 0; i < n; ++i) {
            const uint8_t v = px.get()[i] > 255 ? 255 : uint8_t(px.get()[i]);
            out.rgb[i * 3 + 0] = out.rgb[i * 3 + 1] = out.rgb[i * 3 + 2] = v;
        }
        return out;
    }

    // Everything else: stb's 8-bit decode (16-bit samples reduced to the high byte, like Pillow's
    // ";16B" raw modes); asking for 3 channels replicates grey and drops alpha, as Pillow's convert does.
    int w = 0, h = 0, c = 0;
    std::unique_ptr<stbi_uc, detail::StbFree> px(stbi_load_from_memory(bytes, size, &w, &h, &c, 3));
    if (!px) detail::fail(name, ": cannot decode the image (", detail::stb_reason(), ")");
    if (w != width || h != height) detail::fail(name, ": the decoded size differs from the header's");
    std::copy(px.get(), px.get() + n * 3, out.rgb.begin());
    return out;
}

inline Image load_image(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    return load_image_from_memory(detail::read_whole_file(path, "the image file"), path.string(), limits);
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
