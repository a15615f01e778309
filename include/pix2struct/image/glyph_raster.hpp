// pix2struct/image/glyph_raster.hpp — one glyph's coverage bitmap as Pillow's FreeType draws it.
//
//   bool detail::rasterize_glyph(font, scale, size, pixels_per_unit, glyph, out);
//
// In order of preference: FreeType itself (PIX2STRUCT_WITH_FREETYPE); FreeType's hinted outline from the
// generated table (default font, size 36, common characters) flattened as ftgrays.c does and rasterised
// by stb_truetype; stb_truetype's unhinted outline mapped onto the hinted extents (hint_vertically).
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <vector>

#include <stb_truetype.h>

#include "pix2struct/error.hpp"
#include "pix2struct/image/detail/liberation_sans_36.hpp"
#include "pix2struct/image/detail/liberation_sans_36_outlines.hpp"
#include "pix2struct/image/font.hpp"
#include "pix2struct/image/text_layout.hpp"

namespace pix2struct::detail {

// A small vertical hinter standing in for FreeType's (v40 TrueType hinting moves points in y only):
// the outline above the baseline is scaled so that its top lands on FreeType's hinted top, a descender is
// scaled onto the hinted bottom, and a bottom overshoot that FreeType suppresses (hinted bottom 0) is
// removed by shifting the bottom stroke up, whole (kBand: about one stroke), not by flattening it.
// Works on stb's vertices in font units; `scale` is pixels per unit.
inline void hint_vertically(stbtt_vertex* v, int n, double scale, int y0, int y1, int bottom, int top) {
    constexpr double kBand = 3.0;  // ~ Liberation Sans' horizontal stroke at 36 px (2.5 px) plus slack
    const double lo = y0 * scale, hi = y1 * scale;  // unhinted extremes, pixels
    const double up = (y1 > 0 && top > 0) ? top / hi : 1.0;
    const bool descender = y0 < 0 && bottom < 0;
    const bool overshoot = y0 < 0 && bottom == 0;
    const double down = descender ? bottom / lo : 1.0;
    auto map = [&](stbtt_vertex_type& y) {
        const double py = y * scale;
        double out = py > 0 ? py * up : py * down;
        if (overshoot) out += -lo * std::clamp(1.0 - (py - lo) / kBand, 0.0, 1.0);
        y = stbtt_vertex_type(std::lround(out / scale));
    };
    for (int i = 0; i < n; ++i) {
        map(v[i].y);
        if (v[i].type == STBTT_vcurve || v[i].type == STBTT_vcubic) map(v[i].cy);
        if (v[i].type == STBTT_vcubic) map(v[i].cy1);
    }
}

struct GlyphBitmap {
    int left = 0, top = 0, width = 0, height = 0;  // box relative to the pen (top: rows above the baseline)
    std::vector<unsigned char> pixels;            // [height][width] coverage
};

// A vertex in a std::vector: nvcc's front end (CUDA 13.0) crashes instantiating std::vector<stbtt_vertex>
// (a typedef of an unnamed struct), and .cu files include the image headers (basic_pipeline.hpp).
struct NamedVertex { stbtt_vertex v; };

// FreeType's own hinted outline of a common character of the default font at 36 px
// (detail/liberation_sans_36_outlines.hpp), decomposed and flattened the way FreeType's smooth rasteriser
// does it (FT_Outline_Decompose: implied on-curve points at the truncated 26.6 midpoint; ftgrays.c
// gray_render_conic: coordinates upscaled to 1/256 px, a conic cut into 2^k lines with k the number of
// 4-fold reductions that bring its second difference under 1/4 px, evaluated by fixed-point forward
// differences), then rasterised by stb_truetype (exact area coverage of the line segments). The bitmap box
// is the outline's grid-fitted control box, as FreeType's. Returns false when the table lacks the glyph.
inline bool rasterize_hinted_outline(const PlacedGlyph& g, GlyphBitmap& out) {
    using namespace liberation_sans_36;
    const auto* first = std::begin(kHintedGlyphs);
    const auto* last = std::end(kHintedGlyphs);
    const char32_t key = g.glyph == 0 ? 0 : g.code_point;  // entry 0: .notdef, for characters the font lacks
    const auto* it = std::lower_bound(first, last, key,
                                      [](const HintedGlyph& h, char32_t c) { return h.code_point < c; });
    if (it == last || it->code_point != key || it->glyph != g.glyph) return false;
    struct P { int64_t x, y; bool on; };  // 26.6
    std::vector<P> pts(it->n_points);
    int64_t xmin = INT32_MAX, xmax = INT32_MIN, ymin = INT32_MAX, ymax = INT32_MIN;
    for (int i = 0; i < it->n_points; ++i) {
        const uint32_t v = kHintedPoints[it->first_point + i];
        const int64_t x = int64_t(v & 0x1FFF) - 4096, y = int64_t((v >> 13) & 0x1FFF) - 4096;
        pts[i] = {x, y, ((v >> 26) & 1) != 0};
        xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    std::vector<NamedVertex> verts;  // 1/256 pixel, lines only
    auto emit = [&](unsigned char type, int64_t x, int64_t y) {
        stbtt_vertex v{};
        v.type = type;
        v.x = stbtt_vertex_type(x);
        v.y = stbtt_vertex_type(y);
        verts.push_back({v});
    };
    int64_t cx = 0, cy = 0;  // pen, 1/256 pixel
    auto line_to = [&](int64_t x, int64_t y) {
        emit(STBTT_vline, x, y);
        cx = x, cy = y;
    };
    auto conic_to = [&](const P& c, const P& to) {  // gray_render_conic (FreeType 2.12)
        const int64_t p0x = cx, p0y = cy, p1x = c.x * 4, p1y = c.y * 4, p2x = to.x * 4, p2y = to.y * 4;
        const int64_t bx = p1x - p0x, by = p1y - p0y;
        const int64_t ax = p2x - p1x - bx, ay = p2y - p1y - by;
        int64_t d = std::max(std::llabs(ax), std::llabs(ay));
        constexpr int64_t kOnePixel = 256;
        if (d <= kOnePixel / 4) {
            line_to(p2x, p2y);
            return;
        }
        int shift = 0;
        do {
            d >>= 2;
            ++shift;
        } while (d > kOnePixel / 4);
        // Forward differences in 32.32 fixed point (LEFT_SHIFT is a multiplication, as in ftgrays.c).
        const int64_t rx = ax * (int64_t(1) << (33 - 2 * shift)), ry = ay * (int64_t(1) << (33 - 2 * shift));
        // P(t) = P0 + 2(P1 - P0)t + (P0 + P2 - 2P1)t^2 in steps of 2^-shift: first difference q, second r.
        int64_t qx = bx * (int64_t(1) << (33 - shift)) + ax * (int64_t(1) << (32 - 2 * shift));
        int64_t qy = by * (int64_t(1) << (33 - shift)) + ay * (int64_t(1) << (32 - 2 * shift));
        int64_t px = p0x * (int64_t(1) << 32), py = p0y * (int64_t(1) << 32);
        for (uint32_t count = 1u << shift; count > 0; --count) {
            px += qx, py += qy, qx += rx, qy += ry;
            line_to(px >> 32, py >> 32);
        }
    };
    auto mid = [](const P& a, const P& b) { return P{(a.x + b.x) / 2, (a.y + b.y) / 2, true}; };  // C division
    int start = 0;
    for (int c = 0; c < it->n_contours; ++c) {
        const int end = kHintedContourEnds[it->first_contour + c];
        const int n = end - start + 1;
        const P* q = pts.data() + start;
        start = end + 1;
        // FT_Outline_Decompose: start at the first point if on, else the last if on, else their midpoint.
        P v_start = q[0];
        int i = 0, limit = n - 1;
        if (!q[0].on) {
            if (q[n - 1].on) {
                v_start = q[n - 1];
                limit = n - 2;
            } else {
                v_start = mid(q[0], q[n - 1]);
            }
            i = -1;  // the first point is then a control point
        }
        emit(STBTT_vmove, v_start.x * 4, v_start.y * 4);
        cx = v_start.x * 4, cy = v_start.y * 4;
        while (i < limit) {
            ++i;
            const P& p = q[i];
            if (p.on) {
                line_to(p.x * 4, p.y * 4);
                continue;
            }
            P control = p;  // off-curve: a conic, maybe several with implied on-points
            for (;;) {
                if (i >= limit) {
                    conic_to(control, v_start);
                    goto closed;
                }
                ++i;
                const P& next = q[i];
                if (next.on) {
                    conic_to(control, next);
                    break;
                }
                conic_to(control, mid(control, next));
                control = next;
            }
        }
        line_to(v_start.x * 4, v_start.y * 4);  // close
    closed:;
    }
    // FT_Outline_Get_CBox grid-fitted: floor of the minimum, ceiling of the maximum.
    out.left = int(xmin >> 6);
    out.top = int((ymax + 63) >> 6);
    out.width = int((xmax + 63) >> 6) - out.left;
    out.height = out.top - int(ymin >> 6);
    if (out.width <= 0 || out.height <= 0 || verts.empty()) return false;
    out.pixels.assign(size_t(out.width) * out.height, 0);
    stbtt__bitmap bm{out.width, out.height, out.width, out.pixels.data()};
    const auto flat = std::make_unique<stbtt_vertex[]>(verts.size());
    for (size_t i = 0; i < verts.size(); ++i) flat[i] = verts[i].v;
    stbtt_Rasterize(&bm, 0.35f, flat.get(), int(verts.size()), 1.f / 256, 1.f / 256, 0.f, 0.f, out.left,
                    -out.top, 1, nullptr);
    return true;
}

// A glyph bitmap larger than this is a hostile or broken font (a header glyph at 36 px is ~40x40).
inline constexpr int64_t kMaxGlyphPixels = 16 << 20;

// One glyph's coverage: the outline hinted vertically (hint_vertically), then rasterised by stb_truetype
// (exact-area coverage, like FreeType's smooth rasteriser) at the glyph's whole-pixel pen position.
inline bool rasterize_glyph(const Font& font, const FontScale& s, int size, float scale, const PlacedGlyph& g,
                            GlyphBitmap& out) {
#ifdef PIX2STRUCT_WITH_FREETYPE
    {  // font_render: FT_Load_Glyph(FT_LOAD_DEFAULT | FT_LOAD_RENDER), the 8-bit coverage bitmap
        FT_Face face = font.freetype_face(size);
        if (FT_Load_Glyph(face, FT_UInt(g.glyph), FT_LOAD_DEFAULT | FT_LOAD_RENDER))
            fail(font.path().string(), ": FreeType cannot render glyph ", g.glyph);
        const FT_Bitmap& bm = face->glyph->bitmap;
        if (bm.pixel_mode != FT_PIXEL_MODE_GRAY || bm.width == 0 || bm.rows == 0) return false;
        out.left = face->glyph->bitmap_left;
        out.top = face->glyph->bitmap_top;
        out.width = int(bm.width);
        out.height = int(bm.rows);
        out.pixels.resize(size_t(out.width) * out.height);
        for (int y = 0; y < out.height; ++y)
            std::copy_n(bm.buffer + ptrdiff_t(y) * bm.pitch, out.width, out.pixels.data() + size_t(y) * out.width);
        return true;
    }
#endif
    if (font.has_hinted_table() && size == liberation_sans_36::kPixelSize && rasterize_hinted_outline(g, out))
        return true;
    const stbtt_fontinfo* info = &font.info();
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    if (!stbtt_GetGlyphBox(info, g.glyph, &x0, &y0, &x1, &y1)) return false;
    stbtt_vertex* v = nullptr;
    const int n = stbtt_GetGlyphShape(info, g.glyph, &v);
    if (n <= 0 || !v) return false;
    const auto [bottom, top] = vertical_extent(font, s, size, g.code_point, g.glyph);
    hint_vertically(v, n, double(scale), y0, y1, bottom, top);
    int lowest = INT32_MAX, highest = INT32_MIN;
    for (int i = 0; i < n; ++i) {
        const bool curve = v[i].type == STBTT_vcurve || v[i].type == STBTT_vcubic;
        const int ys[3] = {v[i].y, curve ? v[i].cy : v[i].y, v[i].type == STBTT_vcubic ? v[i].cy1 : v[i].y};
        for (int y : ys) lowest = std::min(lowest, y), highest = std::max(highest, y);
    }
    out.left = int(std::floor(x0 * scale));
    out.width = int(std::ceil(x1 * scale)) - out.left;
    out.top = int(std::ceil(highest * scale - 0.01));
    const int low = int(std::floor(lowest * scale + 0.01));
    out.height = out.top - low;
    if (out.width <= 0 || out.height <= 0 || int64_t(out.width) * out.height > kMaxGlyphPixels) {
        stbtt_FreeShape(info, v);
        if (out.width > 0 && out.height > 0)
            fail(font.path().string(), ": glyph ", g.glyph, " is ", out.width, "x", out.height, " pixels at size ",
                 size, " (more than ", kMaxGlyphPixels, ")");
        return false;
    }
    out.pixels.assign(size_t(out.width) * out.height, 0);
    stbtt__bitmap bm{out.width, out.height, out.width, out.pixels.data()};
    stbtt_Rasterize(&bm, 0.02f, v, n, scale, scale, 0.f, 0.f, out.left, -out.top, 1, nullptr);
    stbtt_FreeShape(info, v);
    return true;
}

}  // namespace pix2struct::detail
