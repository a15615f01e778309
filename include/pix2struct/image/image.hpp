// pix2struct/image/image.hpp — the front end's types: the decoded image, the limits a decoder checks, the
// model input (Patches), and load_image / load_image_from_memory (defined by the implementation,
// image/load.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
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

// Decodes an image file into 8-bit RGB as the reference sees it (Pillow's open + convert("RGB")): JPEG, PNG,
// GIF, WebP or BMP, told by its first bytes. Throws pix2struct::Error naming the file and the problem.
Image load_image(const std::filesystem::path& path, const ImageLimits& limits = {});
// The same for a file's bytes; `name` is used in error messages.
Image load_image_from_memory(std::span<const std::byte> data, std::string_view name, const ImageLimits& limits = {});

// The model input for one image: Pix2StructImageProcessor's flattened patches and attention mask.
struct Patches {
    int rows = 0, cols = 0, max_patches = 0, patch_dim = 0;  // patch_dim = 2 + ph * pw * 3
    std::vector<float> flattened;  // [max_patches, patch_dim]: row id, col id (1-based), pixels
    std::vector<float> mask;       // [max_patches]: 1 real, 0 padding
    int num_real() const { return rows * cols; }
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
