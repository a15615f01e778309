// pix2struct/image/text_layout.hpp — Pillow 13's text layout with libraqm (HarfBuzz) for the header:
// ImageDraw.textbbox of the wrapped question, hence the header's size.
//
//   HeaderLayout layout_header(question, font, size = 36);   // lines, textbbox, header width/height
//
// Unhinted 26.6 advances plus GPOS kerning inside raqm's script runs, each glyph at the rounded pen
// position; the box is the union of the pen line and the glyphs' hinted pixel boxes (FreeType's hinted
// extents come from a generated table for the default font, rounded unhinted extents otherwise); lines
// are getbbox("A")[3] + 4 apart. Not done: ligatures and other substitutions, mark positioning,
// right-to-left reordering.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/image/detail/liberation_sans_36.hpp"
#include "pix2struct/image/font.hpp"
#include "pix2struct/image/image.hpp"
#include "pix2struct/image/text_wrap.hpp"

namespace pix2struct {

// render_text's parameters (transformers image_processing_pix2struct.py).
inline constexpr int kHeaderTextSize = 36;
inline constexpr int kHeaderPadding = 5;      // left, right, top and bottom
inline constexpr int kPillowLineSpacing = 4;  // ImageDraw.text's default `spacing`

namespace detail {

// ---------------------------------------------------------------------------------------------------------
// Script runs (libraqm itemisation): HarfBuzz shapes each run of one script separately, so kerning never
// applies across a script change ("я To" has no space-T kern, "x To" has). Scripts by range: the common
// ones exactly, the rest by Unicode block.
// ---------------------------------------------------------------------------------------------------------
enum : int { kScriptCommon = 0, kScriptInherited = 1, kScriptLatin, kScriptGreek, kScriptCyrillic,
             kScriptArmenian, kScriptHebrew, kScriptArabic, kScriptThai, kScriptHangul, kScriptHan,
             kScriptHiragana, kScriptKatakana, kScriptLao, kScriptKhmer, kScriptBlock0 = 1000 };

// Runs HarfBuzz shapes without kerning with this font (measured with Pillow + libraqm: Thai, Lao and Khmer
// runs go through their own shapers; Hebrew is right-to-left, which we do not lay out).
inline bool script_kerns(int script) {
    return script != kScriptThai && script != kScriptLao && script != kScriptKhmer && script != kScriptHebrew;
}

inline int unicode_script(char32_t c) {
    struct Range { char32_t lo, hi; int script; };
    static constexpr Range kRanges[] = {
        {0x41, 0x5A, kScriptLatin}, {0x61, 0x7A, kScriptLatin}, {0xAA, 0xAA, kScriptLatin},
        {0xBA, 0xBA, kScriptLatin}, {0xC0, 0xD6, kScriptLatin}, {0xD8, 0xF6, kScriptLatin},
        {0xF8, 0x2B8, kScriptLatin}, {0x2E0, 0x2E4, kScriptLatin}, {0x300, 0x36F, kScriptInherited},
        {0x370, 0x373, kScriptGreek}, {0x375, 0x377, kScriptGreek}, {0x37A, 0x37D, kScriptGreek},
        {0x37F, 0x37F, kScriptGreek}, {0x384, 0x384, kScriptGreek}, {0x386, 0x386, kScriptGreek},
        {0x388, 0x3E1, kScriptGreek}, {0x3F0, 0x3FF, kScriptGreek}, {0x400, 0x484, kScriptCyrillic},
        {0x485, 0x486, kScriptInherited}, {0x487, 0x52F, kScriptCyrillic}, {0x531, 0x588, kScriptArmenian},
        {0x58A, 0x58F, kScriptArmenian}, {0x591, 0x5FF, kScriptHebrew}, {0x600, 0x604, kScriptArabic},
        {0x606, 0x60B, kScriptArabic}, {0x60D, 0x61A, kScriptArabic}, {0x61C, 0x61E, kScriptArabic},
        {0x620, 0x63F, kScriptArabic}, {0x641, 0x64A, kScriptArabic}, {0x64B, 0x655, kScriptInherited},
        {0x656, 0x66F, kScriptArabic}, {0x670, 0x670, kScriptInherited}, {0x671, 0x6DC, kScriptArabic},
        {0x6DE, 0x6FF, kScriptArabic}, {0x750, 0x77F, kScriptArabic}, {0x8A0, 0x8FF, kScriptArabic},
        {0xE01, 0xE3A, kScriptThai}, {0xE40, 0xE5B, kScriptThai}, {0xE81, 0xEDF, kScriptLao},
        {0x1780, 0x17DD, kScriptKhmer}, {0x17E0, 0x17F9, kScriptKhmer}, {0x19E0, 0x19FF, kScriptKhmer}, {0x1100, 0x11FF, kScriptHangul},
        {0x1AB0, 0x1AFF, kScriptInherited}, {0x1D00, 0x1D25, kScriptLatin}, {0x1D26, 0x1D2A, kScriptGreek},
        {0x1D2C, 0x1D5C, kScriptLatin}, {0x1D62, 0x1D65, kScriptLatin}, {0x1D6B, 0x1D77, kScriptLatin},
        {0x1D79, 0x1DBE, kScriptLatin}, {0x1DC0, 0x1DFF, kScriptInherited}, {0x1E00, 0x1EFF, kScriptLatin},
        {0x1F00, 0x1FFE, kScriptGreek}, {0x200C, 0x200D, kScriptInherited}, {0x2071, 0x2071, kScriptLatin},
        {0x207F, 0x207F, kScriptLatin}, {0x2090, 0x209C, kScriptLatin}, {0x20D0, 0x20F0, kScriptInherited},
        {0x2126, 0x2126, kScriptGreek}, {0x212A, 0x212B, kScriptLatin}, {0x2132, 0x2132, kScriptLatin},
        {0x214E, 0x214E, kScriptLatin}, {0x2160, 0x2188, kScriptLatin}, {0x2C60, 0x2C7F, kScriptLatin},
        {0x2DE0, 0x2DFF, kScriptCyrillic}, {0x2E80, 0x2FDF, kScriptHan}, {0x3005, 0x3005, kScriptHan},
        {0x3007, 0x3007, kScriptHan}, {0x3021, 0x3029, kScriptHan}, {0x302A, 0x302D, kScriptInherited},
        {0x3038, 0x303B, kScriptHan}, {0x3041, 0x3096, kScriptHiragana}, {0x3099, 0x309A, kScriptInherited},
        {0x309D, 0x309F, kScriptHiragana}, {0x30A1, 0x30FA, kScriptKatakana}, {0x30FD, 0x30FF, kScriptKatakana},
        {0x3131, 0x318E, kScriptHangul}, {0x3400, 0x4DBF, kScriptHan}, {0x4E00, 0x9FFF, kScriptHan},
        {0xA640, 0xA69F, kScriptCyrillic}, {0xA722, 0xA787, kScriptLatin}, {0xA78B, 0xA7FF, kScriptLatin},
        {0xAB30, 0xAB5A, kScriptLatin}, {0xAB5C, 0xAB64, kScriptLatin}, {0xAC00, 0xD7AF, kScriptHangul},
        {0xF900, 0xFAFF, kScriptHan}, {0xFB00, 0xFB06, kScriptLatin}, {0xFB13, 0xFB17, kScriptArmenian},
        {0xFB1D, 0xFB4F, kScriptHebrew}, {0xFB50, 0xFDFF, kScriptArabic}, {0xFE00, 0xFE0F, kScriptInherited},
        {0xFE20, 0xFE2F, kScriptInherited}, {0xFE70, 0xFEFC, kScriptArabic}, {0xFF21, 0xFF3A, kScriptLatin},
        {0xFF41, 0xFF5A, kScriptLatin}, {0xFF66, 0xFF9D, kScriptKatakana}, {0x20000, 0x3FFFF, kScriptHan}};
    for (const Range& r : kRanges)
        if (c >= r.lo && c <= r.hi) return r.script;
    // Other letters: one script per 128-code-point block; everything else (digits, punctuation, symbols,
    // spaces) is Common.
    if (c >= 0x800 && is_word_char(c) && !is_decimal_digit(c)) return kScriptBlock0 + int(c >> 7);
    if (c >= 0x660 && c <= 0x669) return kScriptArabic;  // Arabic-Indic digits are Arabic script
    return kScriptCommon;
}

// raqm _raqm_resolve_scripts: Common and Inherited characters take the script before them (those at the
// start take the first real script); a closing bracket takes the script of its opening one, and so do the
// characters after it.
inline std::vector<int> resolve_scripts(std::u32string_view text) {
    // raqm's paired_chars: (open, close) pairs; even index opens, odd closes.
    static constexpr char32_t kPairs[] = {0x28,   0x29,   0x3C,   0x3E,   0x5B,   0x5D,   0x7B,   0x7D,
                                          0xAB,   0xBB,   0x2018, 0x2019, 0x201C, 0x201D, 0x2039, 0x203A,
                                          0x3008, 0x3009, 0x300A, 0x300B, 0x300C, 0x300D, 0x300E, 0x300F,
                                          0x3010, 0x3011, 0x3014, 0x3015, 0x3016, 0x3017, 0x3018, 0x3019,
                                          0x301A, 0x301B};
    auto pair_index = [](char32_t c) {
        for (int k = 0; k < int(std::size(kPairs)); ++k)
            if (kPairs[k] == c) return k;
        return -1;
    };
    std::vector<int> script(text.size());
    std::vector<std::pair<int, int>> stack;  // (pair index of an opening bracket, its script)
    int last = -1;
    bool any = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const int sc = unicode_script(text[i]);
        if (sc != kScriptCommon && sc != kScriptInherited) {
            if (!any)
                for (size_t j = 0; j < i; ++j) script[j] = sc;
            script[i] = last = sc;
            any = true;
            continue;
        }
        if (!any) {
            script[i] = sc;
            continue;
        }
        script[i] = last;
        const int pi = sc == kScriptCommon ? pair_index(text[i]) : -1;
        if (pi >= 0 && pi % 2 == 0) {
            stack.emplace_back(pi, last);
        } else if (pi >= 0) {
            while (!stack.empty() && stack.back().first != (pi & ~1)) stack.pop_back();
            if (!stack.empty()) script[i] = last = stack.back().second;
        }
    }
    return script;
}

// FreeType fixed-point helpers (26.6 pixels, 16.16 scales), rounding as FreeType does.
inline int64_t ft_muldiv(int64_t a, int64_t b, int64_t c) {  // FT_MulDiv: round(a * b / c), sign-symmetric
    const int64_t s = (a < 0) != (b < 0) ? -1 : 1;
    return s * ((std::llabs(a) * std::llabs(b) + c / 2) / c);
}
inline int pixel_round(int64_t x26) { return int(((x26 + 32) & -64) >> 6); }  // _imagingft.c PIXEL()
inline int pixel_ceil(int64_t x26) { return int(((x26 + 63) & -64) >> 6); }

// One laid-out glyph of a line: glyph index and pen position in pixels (PIXEL of its 26.6 position).
struct PlacedGlyph {
    int glyph = 0;
    int px = 0;
    char32_t code_point = 0;
};

struct LineLayout {
    std::vector<PlacedGlyph> glyphs;
    int right = 0;   // textbbox right: max(pen end, glyph ink right)
    int bottom = 0;  // textbbox bottom: ascender - min(0, lowest glyph ink)
    int top = 0;     // textbbox top: ascender - max(0, highest glyph ink)
};

struct FontScale {
    int64_t x_scale = 0;  // 16.16, FT size metrics (FT_Request_Size nominal: size * 64 / units_per_em)
    int ascender = 0;     // pixels
};

inline FontScale font_scale(const Font& font, int size) {
    FontScale s;
    s.x_scale = (int64_t(size) * 64 * 65536 + font.units_per_em() / 2) / font.units_per_em();  // FT_DivFix
#ifdef PIX2STRUCT_WITH_FREETYPE
    s.ascender = pixel_round(font.freetype_face(size)->size->metrics.ascender);
    return s;
#endif
    if (font.has_hinted_table() && size == liberation_sans_36::kPixelSize) {
        s.ascender = liberation_sans_36::kAscender;
    } else {
        int asc = 0, desc = 0, gap = 0;
        stbtt_GetFontVMetrics(&font.info(), &asc, &desc, &gap);
        s.ascender = pixel_round(ft_muldiv(asc, s.x_scale, 65536));  // hinted TrueType: rounded
    }
    return s;
}

// Hinted vertical ink extents [bottom, top] of a code point's glyph, pixels above the baseline,
// including the baseline (min(0, yMin), max(0, yMax)).
inline std::array<int, 2> vertical_extent(const Font& font, const FontScale& s, int size, char32_t cp, int glyph) {
    if (font.has_hinted_table() && size == liberation_sans_36::kPixelSize) {
        if (glyph == 0) return {liberation_sans_36::kNotdefBottom, liberation_sans_36::kNotdefTop};
        const auto* first = std::begin(liberation_sans_36::kExtents);
        const auto* last = std::end(liberation_sans_36::kExtents);
        const auto* it = std::lower_bound(first, last, cp, [](const auto& e, char32_t c) { return e.code_point < c; });
        if (it != last && it->code_point == cp) return {it->bottom, it->top};
    }
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    if (!stbtt_GetGlyphBox(&font.info(), glyph, &x0, &y0, &x1, &y1)) return {0, 0};
    return {std::min(0, pixel_round(ft_muldiv(y0, s.x_scale, 65536))),
            std::max(0, pixel_round(ft_muldiv(y1, s.x_scale, 65536)))};
}

// FreeTypeFont.getbbox(line) with the raqm layout (_imagingft.c text_layout_raqm +
// bounding_box_and_anchors, anchor "la"): advances are HarfBuzz's unhinted ones (FT_Get_Advance with
// FT_LOAD_NO_HINTING, 16.16 rounded to 26.6) plus GPOS kerning scaled to 26.6; each glyph sits at
// PIXEL(pen); the box is the union of the pen line [0, PIXEL(end)] and the glyphs' pixel boxes.
inline LineLayout layout_line(const Font& font, const FontScale& s, int size, std::u32string_view line) {
    LineLayout out;
    const stbtt_fontinfo* info = &font.info();
    int64_t pen = 0;  // 26.6
    int x_max = 0, y_min = 0, y_max = 0;
    int prev = -1;
    const std::vector<int> scripts = resolve_scripts(line);
    // hb_font_t::em_scale: (v * em_mult + 32768) >> 16, em_mult = (x_scale_26.6 << 16) / upem.
    const int64_t hb_x_scale = (s.x_scale * font.units_per_em() + 32768) >> 16;
    const int64_t em_mult = (hb_x_scale << 16) / font.units_per_em();
    for (size_t i = 0; i < line.size(); ++i) {
        const char32_t cp = line[i];
        const int g = font.glyph_index(cp);  // 0 (.notdef) when the font lacks it, as HarfBuzz
        // HarfBuzz kerns within a script run only (and not at all in some scripts' runs).
        if (prev >= 0 && scripts[i] == scripts[i - 1] && script_kerns(scripts[i])) {
            const int kern = stbtt_GetGlyphKernAdvance(info, prev, g);  // font units
            pen += (int64_t(kern) * em_mult + 32768) >> 16;
        }
        PlacedGlyph pg{g, pixel_round(pen), cp};
        int advance = 0, lsb = 0;
        stbtt_GetGlyphHMetrics(info, g, &advance, &lsb);
        // FT_Get_Advance (unhinted): FT_MulDiv(advance, x_scale, 64) in 16.16; hb-ft: (v + 512) >> 10.
        pen += (ft_muldiv(advance, s.x_scale, 64) + (1 << 9)) >> 10;
        x_max = std::max(x_max, pixel_round(pen));
#ifdef PIX2STRUCT_WITH_FREETYPE
        {  // bounding_box_and_anchors: the hinted glyph's FT_Glyph_Get_CBox(FT_GLYPH_BBOX_PIXELS)
            FT_Face face = font.freetype_face(size);
            FT_Glyph glyph = nullptr;
            if (FT_Load_Glyph(face, FT_UInt(g), FT_LOAD_DEFAULT) || FT_Get_Glyph(face->glyph, &glyph))
                fail(font.path().string(), ": FreeType cannot load glyph ", g);
            FT_BBox box;
            FT_Glyph_Get_CBox(glyph, FT_GLYPH_BBOX_PIXELS, &box);
            FT_Done_Glyph(glyph);
            x_max = std::max(x_max, pg.px + int(box.xMax));
            y_min = std::min(y_min, int(box.yMin));
            y_max = std::max(y_max, int(box.yMax));
            out.glyphs.push_back(pg);
            prev = g;
            continue;
        }
#endif
        int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
        if (stbtt_GetGlyphBox(info, g, &x0, &y0, &x1, &y1)) {
            // FT_Glyph_Get_CBox(FT_GLYPH_BBOX_PIXELS): outline points scaled to 26.6 (FT_MulFix), box
            // grid-fitted outwards. TrueType hinting in FreeType's v40 mode leaves x alone.
            x_max = std::max(x_max, pg.px + pixel_ceil(ft_muldiv(x1, s.x_scale, 65536)));
            const auto [bottom, top] = vertical_extent(font, s, size, cp, g);
            y_min = std::min(y_min, bottom);
            y_max = std::max(y_max, top);
        }
        out.glyphs.push_back(pg);
        prev = g;
    }
    if (!line.empty()) {
        out.right = x_max;
        out.bottom = s.ascender - y_min;
        out.top = s.ascender - y_max;
    }
    return out;
}

}  // namespace detail

// The header's geometry: render_text's wrapped lines, ImageDraw.textbbox((0, 0), "\n".join(lines)), and
// the header size (bbox right + 10, bbox bottom + 10).
struct HeaderLayout {
    std::vector<std::string> lines;
    std::vector<int> line_y;       // top of each line's layout box (multiples of the line spacing)
    int left = 0, top = 0, right = 0, bottom = 0;
    int width = 0, height = 0;     // header image size
};

namespace detail {

struct HeaderPlan {
    HeaderLayout layout;
    std::vector<LineLayout> lines;
    FontScale scale;
};

inline HeaderPlan plan_header(std::string_view question, const Font& font, int size) {
    HeaderPlan p;
    p.scale = font_scale(font, size);
    HeaderLayout& h = p.layout;
    h.lines = wrap_text(question);
    // ImageText._split: a single line is laid out alone; several lines are getbbox("A")[3] + spacing apart.
    const LineLayout a = layout_line(font, p.scale, size, U"A");
    const int spacing = a.bottom + kPillowLineSpacing;
    for (size_t i = 0; i < h.lines.size(); ++i) {
        const std::u32string line = utf8_decode(h.lines[i], "question");
        LineLayout ll = layout_line(font, p.scale, size, line);
        const int y = int(i) * spacing;
        // get_bbox: union of the lines' boxes (getbbox left is min(0, ink left): 0 for our purposes).
        const int l = 0, t = ll.top + y, r = ll.right, b = ll.bottom + y;
        if (i == 0) {
            h.left = l, h.top = t, h.right = r, h.bottom = b;
        } else {
            h.left = std::min(h.left, l), h.top = std::min(h.top, t);
            h.right = std::max(h.right, r), h.bottom = std::max(h.bottom, b);
        }
        h.line_y.push_back(y);
        p.lines.push_back(std::move(ll));
    }
    // render_text: text_width/height are the bbox's right and bottom (not right - left), plus padding.
    // A hostile font's metrics can make the box empty or vast: checked before any pixel is allocated.
    check_image_size(font.path().string() + ": the question header", "header", int64_t(h.right) + 2 * kHeaderPadding,
                     int64_t(h.bottom) + 2 * kHeaderPadding, ImageLimits{});
    h.width = h.right + 2 * kHeaderPadding;
    h.height = h.bottom + 2 * kHeaderPadding;
    return p;
}

}  // namespace detail

inline HeaderLayout layout_header(std::string_view question, const Font& font, int size = kHeaderTextSize) {
    return detail::plan_header(question, font, size).layout;
}

}  // namespace pix2struct
