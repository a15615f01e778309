// pix2struct/image/image.hpp — the decoded image type, the decoding limits, and whole-file reading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pix2struct/error.hpp"

namespace pix2struct {

// An 8-bit RGB image, rows top to bottom, pixels interleaved: rgb[(y * width + x) * 3 + c].
struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // [height][width][3]

    bool empty() const { return width == 0 || height == 0; }
    const uint8_t* pixel(int x, int y) const { return rgb.data() + (size_t(y) * width + x) * 3; }
};

// What a decoder may be asked to produce. Checked on the sizes a file declares, before any pixel buffer
// is allocated; a file over a limit is an Error naming the file, the size and the limit.
struct ImageLimits {
    int64_t max_pixels = 100'000'000;    // decoded width x height (Pillow refuses past 178,956,970)
    int64_t max_file_bytes = 1LL << 30;  // bytes read from a file
};

namespace detail {

// Refuses a declared size of zero or over the limit (64-bit arithmetic: any two 32-bit sides).
inline void check_image_size(std::string_view name, std::string_view format, int64_t width, int64_t height,
                             const ImageLimits& limits) {
    if (width <= 0 || height <= 0) fail(name, ": the ", format, " image has no pixels (", width, "x", height, ")");
    if (width > limits.max_pixels || height > limits.max_pixels || width * height > limits.max_pixels)
        fail(name, ": the ", format, " image is ", width, "x", height, " = ", width * height,
             " pixels, more than the limit of ", limits.max_pixels, " (ImageLimits::max_pixels)");
}

// A whole regular file's bytes, at most `max_bytes`; `what` names it in the errors ("the image file").
inline std::vector<std::byte> read_whole_file(const std::filesystem::path& path, std::string_view what,
                                              int64_t max_bytes = ImageLimits{}.max_file_bytes) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) fail(path.string(), ": cannot open ", what, " (no such file)");
    if (!std::filesystem::is_regular_file(status)) fail(path.string(), ": cannot read ", what, " (not a regular file)");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(path.string(), ": cannot open ", what);
    const std::streamoff size = in.tellg();
    if (size < 0) fail(path.string(), ": cannot read ", what);
    if (size > max_bytes) fail(path.string(), ": ", what, " is ", size, " bytes, more than the limit of ", max_bytes);
    std::vector<std::byte> data(static_cast<size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) fail(path.string(), ": cannot read ", what);
    return data;
}

}  // namespace detail
}  // namespace pix2struct
