// pix2struct/image/patches.hpp — Pix2StructImageProcessor.preprocess: an RGB image (and, for VQA
// checkpoints, the question) to the model's flattened patches.
//
//   PreprocessOptions opt;  opt.max_patches = 2048;  opt.is_vqa = true;   // from preprocessor_config.json
//   Patches p = preprocess(image, "What does the label 15 represent? ...", opt);
//   p.flattened  // [max_patches, 2 + 16*16*3]: row id, col id (1-based), then the patch [y][x][channel]
//   p.mask       // [max_patches]: 1 for the rows * cols real patches, 0 for the zero padding
// Throws pix2struct::Error for an empty image, bad options, a missing header font, or a VQA call
// without a question (the reference raises "A header text must be provided for VQA models.").
//
// Steps (transformers 4.57.6 image_processing_pix2struct.py):
//  1. VQA only: render_header — the question drawn above the image (header.hpp, render_question);
//     captioning checkpoints (is_vqa false) never draw the text.
//  2. normalize: per-image standardization over all pixels and channels (float32 result).
//  3. extract_flattened_patches: rows/cols maximising the patch count, torch antialiased bilinear resize
//     to (16 rows, 16 cols), patches in row-major order, ids prepended, zero rows to max_patches.
//  4. attention mask: the reference computes `flattened.sum(-1) != 0`; we mark the first rows * cols
//     rows, which is the same unless a real patch's features (ids >= 1 included) sum to exactly zero.
// Known reference quirk we do not copy: transformers guesses the channel axis of a numpy image, so an image
// 1 or 3 pixels high is read as channels-first (render_header is not given input_data_format), giving a
// garbled picture; we always read [height][width][3] (what the reference gives for every other image).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/image/header.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/resample.hpp"

namespace pix2struct {

struct PreprocessOptions {
    int max_patches = 2048, patch_height = 16, patch_width = 16;
    bool is_vqa = false;
    std::string font_path{};  // empty: Font::default_path() (Liberation Sans)
    // Longest question drawn (UTF-8 bytes). The reference has no limit, but a header of hundreds of lines
    // costs ~10 KB of memory per character and leaves the image a sliver of the patch budget.
    size_t max_question_bytes = 16384;
    // Most bytes the picture with its header (render_question) may take to preprocess; 0: physical memory.
    int64_t max_memory_bytes = 0;
};

// The patch grid extract_flattened_patches chooses for an image of height x width:
//   scale = sqrt(max_patches * (ph / h) * (pw / w))
//   rows = max(min(floor(scale * h / ph), max_patches), 1), cols likewise.
struct PatchGrid {
    int rows = 0, cols = 0;
};

inline PatchGrid patch_grid(int height, int width, int max_patches, int patch_height = 16, int patch_width = 16) {
    // Python float arithmetic, evaluated left to right as in the reference.
    const double scale = std::sqrt(double(max_patches) * (double(patch_height) / height) *
                                   (double(patch_width) / width));
    PatchGrid g;
    g.rows = int(std::max(std::min(std::floor(scale * height / patch_height), double(max_patches)), 1.0));
    g.cols = int(std::max(std::min(std::floor(scale * width / patch_width), double(max_patches)), 1.0));
    return g;
}

// Pix2StructImageProcessor.normalize: (x - mean) / max(std, 1 / sqrt(h * w * 3)) over the whole uint8
// image as float32, returned planar [3][h][w] (the layout torch interpolates). numpy reduces in float32
// (pairwise sums): accumulating in double lands within float rounding of its mean and std.
inline std::vector<float> standardize_chw(const Image& image) {
    const size_t n_pixels = size_t(image.width) * image.height;
    const size_t n = n_pixels * 3;
    double sum = 0;
    for (uint8_t v : image.rgb) sum += v;
    const float mean = float(sum / double(n));  // np.mean -> float32
    double sq = 0;
    for (uint8_t v : image.rgb) {
        const double d = double(float(v) - mean);  // exact in float32 for 8-bit values
        sq += d * d;
    }
    const float std_dev = float(std::sqrt(sq / double(n)));  // np.std (population) -> float32
    const double floor_std = 1.0 / std::sqrt(double(n));    // 1.0 / math.sqrt(np.prod(image.shape))
    // max(np.float32, float), then np.array([std], dtype=float32) in transformers' normalize().
    const float adjusted = double(std_dev) >= floor_std ? std_dev : float(floor_std);
    std::vector<float> out(n);
    for (size_t p = 0; p < n_pixels; ++p)
        for (int c = 0; c < 3; ++c) out[c * n_pixels + p] = (float(image.rgb[p * 3 + c]) - mean) / adjusted;
    return out;
}

namespace detail {

// The bounds preprocessor_config.json is held to (config.hpp), so that the patches' sizes fit.
inline void check_options(const PreprocessOptions& opt) {
    if (opt.max_patches < 1 || opt.max_patches > (1 << 16) || opt.patch_height < 1 || opt.patch_height > 256 ||
        opt.patch_width < 1 || opt.patch_width > 256)
        fail("preprocess: max_patches (", opt.max_patches, ") must be 1 to 65536, patch_height (", opt.patch_height,
             ") and patch_width (", opt.patch_width, ") 1 to 256");
    const int64_t values = int64_t(opt.max_patches) * (2 + int64_t(opt.patch_height) * opt.patch_width * 3);
    if (values > (int64_t(1) << 28))
        fail("preprocess: max_patches ", opt.max_patches, " of ", opt.patch_height, "x", opt.patch_width,
             " patches would be ", values, " values, more than the limit of 2^28 (1 GiB)");
}

// extract_flattened_patches on a standardized planar image.
inline Patches extract_flattened_patches(const std::vector<float>& chw, int height, int width,
                                         const PreprocessOptions& opt) {
    const int ph = opt.patch_height, pw = opt.patch_width;
    const PatchGrid g = patch_grid(height, width, opt.max_patches, ph, pw);
    const int rh = g.rows * ph, rw = g.cols * pw;
    // torch.nn.functional.interpolate(bilinear, align_corners=False, antialias=True)
    const std::vector<float> img = resize_bilinear_antialias(chw, 3, height, width, rh, rw);  // [3, rh, rw]
    Patches p;
    p.rows = g.rows;
    p.cols = g.cols;
    p.max_patches = opt.max_patches;
    p.patch_dim = 2 + ph * pw * 3;
    p.flattened.assign(size_t(opt.max_patches) * p.patch_dim, 0.0f);  // torch.nn.functional.pad with zeros
    p.mask.assign(size_t(opt.max_patches), 0.0f);
    const size_t plane = size_t(rh) * rw;
    // torch_extract_patches: unfold -> [C, ph, pw, L] -> permute to [L, ph, pw, C]: each patch [y][x][c].
    for (int r = 0; r < g.rows; ++r) {
        for (int c = 0; c < g.cols; ++c) {
            const size_t index = size_t(r) * g.cols + c;
            float* row = p.flattened.data() + index * p.patch_dim;
            row[0] = float(r + 1);  // "Offset by 1 so the ids do not contain zeros, which represent padding."
            row[1] = float(c + 1);
            float* dst = row + 2;
            for (int y = 0; y < ph; ++y)
                for (int x = 0; x < pw; ++x) {
                    const size_t at = size_t(r * ph + y) * rw + size_t(c * pw + x);
                    for (int ch = 0; ch < 3; ++ch) *dst++ = img[ch * plane + at];
                }
            p.mask[index] = 1.0f;
        }
    }
    return p;
}

}  // namespace detail

// Pix2StructImageProcessor(is_vqa, max_patches)(image, header_text=question, font_path=...).
// `question` is drawn only when opt.is_vqa; an empty question draws an empty (padding-only) header, as
// the reference does for "".
inline Patches preprocess(const Image& image, std::string_view question, const PreprocessOptions& opt) {
    detail::check_options(opt);
    if (image.empty() || image.rgb.size() != size_t(image.width) * image.height * 3)
        detail::fail("preprocess: the image is empty or inconsistent (", image.width, "x", image.height, ")");
    if (question.size() > opt.max_question_bytes)
        detail::fail("preprocess: the question is ", question.size(), " bytes, more than the limit of ",
                     opt.max_question_bytes, " (PreprocessOptions::max_question_bytes)");
    const Image composed = opt.is_vqa ? render_question(image, question, opt.font_path, opt.max_memory_bytes) : Image{};
    const Image& input = opt.is_vqa ? composed : image;
    return detail::extract_flattened_patches(standardize_chw(input), input.height, input.width, opt);
}

// Without a question: captioning checkpoints only.
inline Patches preprocess(const Image& image, const PreprocessOptions& opt) {
    if (opt.is_vqa)
        detail::fail("preprocess: this is a VQA checkpoint (is_vqa): a question (header text) is required, "
                     "as the reference's \"A header text must be provided for VQA models.\"");
    return preprocess(image, std::string_view{}, opt);
}

}  // namespace pix2struct
