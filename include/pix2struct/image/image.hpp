// pix2struct/image/image.hpp — the decoded image type and the limits a decoder checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/read_file.hpp"

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

}  // namespace detail
}  // namespace pix2struct
