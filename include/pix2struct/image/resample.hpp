// pix2struct/image/resample.hpp — the two resamplers of the reference, reproduced exactly.
//
//   Image resize_bicubic(const Image&, int width, int height);
//       Pillow's `Image.resize(size)` with its default filter for RGB (BICUBIC), bit-identical to
//       Pillow 13's libImaging/Resample.c (render_header resizes the header and the image with it).
//   std::vector<float> resize_bilinear_antialias(chw, channels, height, width, out_height, out_width);
//       torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True) on float
//       planar [C, H, W] data (extract_flattened_patches resizes the standardized image with it).
// Both throw pix2struct::Error on a non-positive size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/image/load.hpp"

namespace pix2struct {

namespace detail {

// ---------------------------------------------------------------------------------------------------------
// Pillow (Resample.c)
// ---------------------------------------------------------------------------------------------------------

// Resample.c: #define PRECISION_BITS (32 - 8 - 2): 8 bits of result, 2 bits of headroom for filters
// with negative lobes.
inline constexpr int kPillowPrecisionBits = 32 - 8 - 2;

// Resample.c bicubic_filter, a = -0.5.
inline double pillow_bicubic(double x) {
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Fixed-point coefficients of one axis: for each output index, the first input index and the
// integer weights (Resample.c precompute_coeffs + normalize_coeffs_8bpc).
struct PillowCoeffs {
    int ksize = 0;
    std::vector<int> first, count;  // [out]
    std::vector<int32_t> weights;   // [out][ksize]
};

inline PillowCoeffs pillow_coeffs(int in_size, int out_size) {
    constexpr double support_1x = 2.0;  // BICUBIC.support
    // precompute_coeffs: box (in0, in1) = (0, in_size) as floats; filterscale grows when downscaling.
    const float in0 = 0.0f, in1 = float(in_size);
    const double scale = double(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = support_1x * filterscale;
    PillowCoeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(size_t(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    const double inv_filterscale = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = int(center - support + 0.5);  // C truncation, as in Resample.c
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; ++x) {
            const double w = pillow_bicubic((x + xmin - center + 0.5) * inv_filterscale);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x) {
            if (ww != 0.0) k[x] /= ww;
            // normalize_coeffs_8bpc: round half away from zero to PRECISION_BITS.
            const double v = k[x] * (1 << kPillowPrecisionBits);
            c.weights[size_t(xx) * c.ksize + x] = k[x] < 0 ? int32_t(-0.5 + v) : int32_t(0.5 + v);
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

// Resample.c clip8: the accumulator (with its 1 << (PRECISION_BITS - 1) rounding bias) shifted
// arithmetically, then clamped to [0, 255] (the _clip8_lookups table).
inline uint8_t pillow_clip8(int32_t acc) {
    const int32_t v = acc >> kPillowPrecisionBits;
    return v < 0 ? 0 : v > 255 ? 255 : uint8_t(v);
}

// _ImagingResampleHorizontal_8bpc for 3 bands.
inline Image pillow_horizontal(const Image& in, int out_width) {
    const PillowCoeffs c = pillow_coeffs(in.width, out_width);
    Image out;
    out.width = out_width;
    out.height = in.height;
    out.rgb.resize(size_t(out.width) * out.height * 3);
    for (int y = 0; y < in.height; ++y) {
        const uint8_t* line = in.rgb.data() + size_t(y) * in.width * 3;
        uint8_t* dst = out.rgb.data() + size_t(y) * out_width * 3;
        for (int xx = 0; xx < out_width; ++xx) {
            const int32_t* k = c.weights.data() + size_t(xx) * c.ksize;
            const uint8_t* src = line + size_t(c.first[xx]) * 3;
            int32_t s0 = 1 << (kPillowPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < c.count[xx]; ++x) {
                s0 += src[x * 3 + 0] * k[x];
                s1 += src[x * 3 + 1] * k[x];
                s2 += src[x * 3 + 2] * k[x];
            }
            dst[xx * 3 + 0] = pillow_clip8(s0);
            dst[xx * 3 + 1] = pillow_clip8(s1);
            dst[xx * 3 + 2] = pillow_clip8(s2);
        }
    }
    return out;
}

// _ImagingResampleVertical_8bpc for 3 bands.
inline Image pillow_vertical(const Image& in, int out_height) {
    const PillowCoeffs c = pillow_coeffs(in.height, out_height);
    Image out;
    out.width = in.width;
    out.height = out_height;
    out.rgb.resize(size_t(out.width) * out.height * 3);
    const size_t stride = size_t(in.width) * 3;
    // Integer sums, so accumulating a whole row per input row (reading rows in order) gives Resample.c's
    // per-pixel result exactly (no partial sum can overflow int32: 255 * sum |k| < 2^31).
    std::vector<int32_t> acc(stride);
    for (int yy = 0; yy < out_height; ++yy) {
        const int32_t* k = c.weights.data() + size_t(yy) * c.ksize;
        const uint8_t* src = in.rgb.data() + size_t(c.first[yy]) * stride;
        uint8_t* dst = out.rgb.data() + size_t(yy) * stride;
        std::fill(acc.begin(), acc.end(), 1 << (kPillowPrecisionBits - 1));
        for (int y = 0; y < c.count[yy]; ++y) {
            const uint8_t* line = src + size_t(y) * stride;
            for (size_t i = 0; i < stride; ++i) acc[i] += line[i] * k[y];
        }
        for (size_t i = 0; i < stride; ++i) dst[i] = pillow_clip8(acc[i]);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// torch (aten/src/ATen/native/cpu/UpSampleKernel.cpp, the antialiased separable path)
// ---------------------------------------------------------------------------------------------------------

// HelperInterpLinear::aa_filter: the triangle.
inline float torch_aa_triangle(float x) {
    if (x < 0.0f) x = -x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

struct TorchAAWeights {
    std::vector<int64_t> first, count;  // [out]
    std::vector<float> weights;         // [out][max_size]
    int64_t max_size = 0;
};

// HelperInterpBase::_compute_weights_aa with scalar_t = float, scale = input / output
// (area_pixel_compute_scale, align_corners=False), support = scale (downscale) or 1 (upscale).
// The mixed float/double arithmetic mirrors the reference expression by expression.
inline TorchAAWeights torch_aa_weights(int64_t in_size, int64_t out_size) {
    const float scale = float(in_size) / float(out_size);
    const float support = scale >= 1.0f ? 1.0f * scale : 1.0f;  // (interp_size / 2) * scale, interp_size = 2
    TorchAAWeights t;
    t.max_size = int64_t(std::ceil(support)) * 2 + 1;
    t.first.resize(out_size);
    t.count.resize(out_size);
    t.weights.assign(size_t(out_size * t.max_size), 0.0f);
    const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    for (int64_t i = 0; i < out_size; ++i) {
        const float center = float(scale * (i + 0.5));
        const int64_t xmin = std::max<int64_t>(int64_t(center - support + 0.5), 0);
        const int64_t xsize = std::min<int64_t>(int64_t(center + support + 0.5), in_size) - xmin;
        float* w = t.weights.data() + i * t.max_size;
        float total = 0.0f;
        for (int64_t j = 0; j < xsize; ++j) {
            const float arg = float((float(j + xmin) - center + 0.5) * invscale);
            w[j] = torch_aa_triangle(arg);
            total += w[j];
        }
        if (total != 0.0f)
            for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
        t.first[i] = xmin;
        t.count[i] = xsize;
    }
    return t;
}

}  // namespace detail

// Pillow `Image.resize((width, height))` for an RGB image (default filter BICUBIC, reducing_gap None).
// Resample.c ImagingResampleInner: two separable 8-bit passes, each rounded and clipped; the vertical pass
// runs first when the height shrinks by more than twice as many pixels as the width; a pass whose size does
// not change is skipped, and an unchanged size is a copy (Image.resize returns self.copy()).
inline Image resize_bicubic(const Image& image, int width, int height) {
    if (width <= 0 || height <= 0 || image.empty())
        detail::fail("resize_bicubic: cannot resize a ", image.width, "x", image.height, " image to ", width, "x",
                     height);
    const bool need_horizontal = width != image.width;
    const bool need_vertical = height != image.height;
    const bool horizontal_first =
        !((image.height - height) > 0 && (image.height - height) > (image.width - width) * 2);
    if (!need_horizontal && !need_vertical) return image;
    if (!need_vertical) return detail::pillow_horizontal(image, width);
    if (!need_horizontal) return detail::pillow_vertical(image, height);
    // (Pillow restricts the horizontal-first pass to the rows the vertical pass reads: same result.)
    return horizontal_first ? detail::pillow_vertical(detail::pillow_horizontal(image, width), height)
                            : detail::pillow_horizontal(detail::pillow_vertical(image, height), width);
}

// torch.nn.functional.interpolate(x[None], size=(out_height, out_width), mode="bilinear",
// align_corners=False, antialias=True)[0] for planar float data [channels][height][width].
// _separable_upsample_generic_Nd_kernel_impl: the width pass first, then the height pass, each skipped when
// that size does not change; each output is a float sum, first weight first.
inline std::vector<float> resize_bilinear_antialias(std::span<const float> chw, int channels, int height,
                                                    int width, int out_height, int out_width) {
    if (channels <= 0 || height <= 0 || width <= 0 || out_height <= 0 || out_width <= 0 ||
        chw.size() != size_t(channels) * height * width)
        detail::fail("resize_bilinear_antialias: cannot resize [", channels, ", ", height, ", ", width, "] (",
                     chw.size(), " values) to ", out_height, "x", out_width);
    if (out_width == width && out_height == height) return std::vector<float>(chw.begin(), chw.end());
    // `cur` is the latest pass's output; the first pass reads the caller's data directly.
    std::vector<float> cur;
    const float* in = chw.data();
    int h = height, w = width;
    if (out_width != w) {
        const detail::TorchAAWeights t = detail::torch_aa_weights(w, out_width);
        std::vector<float> next(size_t(channels) * h * out_width);
        for (size_t row = 0; row < size_t(channels) * h; ++row) {
            const float* src = in + row * w;
            float* dst = next.data() + row * out_width;
            for (int x = 0; x < out_width; ++x) {
                const float* k = t.weights.data() + x * t.max_size;
                const float* s = src + t.first[x];
                float acc = s[0] * k[0];
                for (int64_t j = 1; j < t.count[x]; ++j) acc += s[j] * k[j];
                dst[x] = acc;
            }
        }
        cur.swap(next);
        in = cur.data();
        w = out_width;
    }
    if (out_height != h) {
        const detail::TorchAAWeights t = detail::torch_aa_weights(h, out_height);
        std::vector<float> next(size_t(channels) * out_height * w);
        for (int c = 0; c < channels; ++c) {
            const float* plane = in + size_t(c) * h * w;
            float* out = next.data() + size_t(c) * out_height * w;
            for (int y = 0; y < out_height; ++y) {
                const float* k = t.weights.data() + y * t.max_size;
                const float* s = plane + size_t(t.first[y]) * w;
                float* dst = out + size_t(y) * w;
                for (int x = 0; x < w; ++x) dst[x] = s[x] * k[0];
                for (int64_t j = 1; j < t.count[y]; ++j)
                    for (int x = 0; x < w; ++x) dst[x] += s[size_t(j) * w + x] * k[j];
            }
        }
        cur.swap(next);
    }
    return cur;
}

}  // namespace pix2struct
