// pix2struct/image/header.hpp — the question header of VQA checkpoints (transformers' render_text /
// render_header), reproduced with stb_truetype.
//
//   std::vector<std::string> wrap_text(question, width = 80);     // text_wrap.hpp: Python textwrap
//   Font font = Font::load(path);  Font::default_path();         // font.hpp: Liberation Sans by default
//   HeaderLayout layout = layout_header(question, font);         // text_layout.hpp: textbbox, header size
//   Image header = render_header_text(question, font);           // render_text: black on white, size 36
//   Image composed = render_question(image, question, font_path); // render_header: header above image
// All throw pix2struct::Error (font not found or unreadable, question not valid UTF-8).
//
// What is exact and what is not (tests/test_header.cpp measures it):
//  * line breaking is Python 3.11 textwrap's algorithm (tabs, whitespace, hyphen and em-dash splitting,
//    long words cut at 80 code points); Unicode `\w` is approximated by script ranges (detail::is_word_char);
//  * the layout (header width and height) follows Pillow 13 with libraqm/HarfBuzz: unhinted 26.6
//    advances plus GPOS kerning inside raqm's script runs (detail::resolve_scripts), each glyph at the
//    rounded pen position, the box the union of glyph pixel boxes and the pen line, lines
//    `getbbox("A")[3] + 4` apart. FreeType's hinted vertical extents come
//    from a table generated for the default font (detail/liberation_sans_36.hpp); other fonts use rounded
//    unhinted extents, and complex shaping (ligatures, marks, right-to-left) is not done;
//  * glyph pixels: Pillow draws FreeType's hinted glyphs. For the default font at size 36 we rasterise
//    FreeType's hinted outlines (generated table detail/liberation_sans_36_outlines.hpp: ASCII, Latin-1,
//    Greek, Cyrillic, common punctuation, .notdef), flattened as FreeType does, with stb_truetype: mean
//    difference about 0.05 levels of 255, max 4. Other glyphs and fonts: stb_truetype's unhinted outline
//    mapped onto the hinted extents (hint_vertically), about 2 levels mean along edges.
//  * PIX2STRUCT_WITH_FREETYPE (define it and link FreeType, e.g. CMake Freetype::Freetype): glyph boxes
//    and pixels come from FreeType itself, as in Pillow; the test headers are then bit-identical
//    (FreeType 2.12 here against Pillow's bundled 2.14).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/image/font.hpp"
#include "pix2struct/image/glyph_raster.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/resample.hpp"
#include "pix2struct/image/text_layout.hpp"
#include "pix2struct/image/text_wrap.hpp"
#include "pix2struct/memory.hpp"

namespace pix2struct {

namespace detail {

// Pillow's integer blends (libImaging/ImPlatform.h / Draw.c).
inline uint8_t muldiv255(int a, int b) {
    const int t = a * b + 128;
    return uint8_t(((t >> 8) + t) >> 8);
}

}  // namespace detail

// transformers render_text(question, font_path=...): black text on a white RGB image, drawn at (5, 5).
// Each line's glyph coverages are merged like _imagingft.c font_render (a + b(255 - a)/255), then the mask
// is painted with black ink (Draw.c fill_mask_L: DIV255(in * (255 - m) + ink * m)).
inline Image render_header_text(std::string_view question, const Font& font, int size = kHeaderTextSize) {
    const detail::HeaderPlan p = detail::plan_header(question, font, size);
    Image out;
    out.width = p.layout.width;
    out.height = p.layout.height;
    out.rgb.assign(size_t(out.width) * out.height * 3, 255);
    const float scale = float(double(p.scale.x_scale) / 65536.0 / 64.0);  // pixels per font unit
    detail::GlyphBitmap bitmap;
    // One line's mask at a time, in image coordinates (glyph pixel boxes may overlap: merge them first).
    // Only rows [row_lo, row_hi) are touched by a line; they are painted, then cleared for the next line.
    std::vector<uint8_t> mask(size_t(out.width) * out.height, 0);
    for (size_t li = 0; li < p.lines.size(); ++li) {
        int row_lo = out.height, row_hi = 0;
        const int base_y = kHeaderPadding + p.layout.line_y[li] + p.scale.ascender;  // baseline row
        for (const detail::PlacedGlyph& g : p.lines[li].glyphs) {
            if (!detail::rasterize_glyph(font, p.scale, size, scale, g, bitmap)) continue;
            const int x0 = bitmap.left, y0 = -bitmap.top, w = bitmap.width, h = bitmap.height;
            const int ox = kHeaderPadding + g.px + x0, oy = base_y + y0;
            row_lo = std::min(row_lo, std::max(oy, 0));
            row_hi = std::max(row_hi, std::min(oy + h, out.height));
            for (int y = 0; y < h; ++y) {
                const int iy = oy + y;
                if (iy < 0 || iy >= out.height) continue;
                for (int x = 0; x < w; ++x) {
                    const int ix = ox + x;
                    const int a = bitmap.pixels[size_t(y) * w + x];
                    if (ix < 0 || ix >= out.width || a == 0) continue;
                    uint8_t& m = mask[size_t(iy) * out.width + ix];
                    m = m > 0 ? uint8_t(std::min(255, a + detail::muldiv255(m, 255 - a))) : uint8_t(a);
                }
            }
        }
        for (size_t i = size_t(row_lo) * out.width; i < size_t(std::max(row_lo, row_hi)) * out.width; ++i) {
            if (mask[i] == 0) continue;
            for (int c = 0; c < 3; ++c) {
                uint8_t& v = out.rgb[i * 3 + c];
                v = detail::muldiv255(v, 255 - mask[i]);  // ink 0: DIV255(v * (255 - m) + 0 * m)
            }
            mask[i] = 0;
        }
    }
    return out;
}

// transformers render_header(image, question): the header resized to the wider of the two widths above
// the image resized to that width, heights int(h * new_width / w), both with Pillow's default (bicubic)
// resize, pasted on a white canvas. A narrow image grows with the square of the widening (1×100000 under a
// 264-pixel header: 264 × 26,400,000 pixels), so the picture's preprocessing buffers (about
// kPreprocessBytesPerPixel a pixel, patches.hpp) are checked against `max_memory_bytes` (0: physical memory)
// before anything is drawn.
inline constexpr int64_t kPreprocessBytesPerPixel = 27;  // RGB 3, float planes 12, the resize's first pass ≤ 12
inline Image render_question(const Image& image, std::string_view question, const std::string& font_path,
                             int64_t max_memory_bytes = 0) {
    if (image.empty()) detail::fail("render_question: the image is empty");
    const Font font = Font::load(font_path.empty() ? Font::default_path() : std::filesystem::path(font_path));
    const Image header = render_header_text(question, font);
    const int new_width = std::max(header.width, image.width);
    // int(image.height * (new_width / image.width)) — Python float division, then truncation (checked before
    // it is narrowed to int: a narrow image grows past any int).
    const double image_height = std::floor(double(image.height) * (double(new_width) / double(image.width)));
    const double header_height = std::floor(double(header.height) * (double(new_width) / double(header.width)));
    const double bytes = double(new_width) * (image_height + header_height) * double(kPreprocessBytesPerPixel);
    const int64_t budget = max_memory_bytes > 0 ? max_memory_bytes : physical_memory_bytes();
    if (image_height + header_height > double(std::numeric_limits<int>::max()) || (budget > 0 && bytes > double(budget)))
        detail::fail("render_question: the ", image.width, "x", image.height, " image widened to the question header's ",
                     new_width, " pixels would be ", new_width, "x", int64_t(std::min(image_height + header_height, 9e18)),
                     " with the header; preprocessing it needs about ", int64_t(std::min(bytes, 9e18)) >> 20,
                     " MiB, more than the budget of ", budget >> 20,
                     " MiB (PreprocessOptions::max_memory_bytes, PipelineOptions::max_memory_bytes, --max-memory-mb)");
    const int new_height = int(image_height), new_header_height = int(header_height);
    // The two resized images fill the canvas exactly (the white background never shows): stack them.
    Image out;
    out.width = new_width;
    out.height = new_height + new_header_height;
    out.rgb.reserve(size_t(out.width) * out.height * 3);
    if (new_header_height > 0) {
        const Image h = resize_bicubic(header, new_width, new_header_height);
        out.rgb.insert(out.rgb.end(), h.rgb.begin(), h.rgb.end());
    }
    if (new_height > 0) {
        const Image im = resize_bicubic(image, new_width, new_height);
        out.rgb.insert(out.rgb.end(), im.rgb.begin(), im.rgb.end());
    }
    return out;
}

}  // namespace pix2struct
