// pix2struct/image/header.hpp — the question header of VQA checkpoints (transformers' render_text /
// render_header), reproduced with stb_truetype.
//
//   std::vector<std::string> wrap_text(question, width = 80);     // Python textwrap.TextWrapper(width).wrap
//   Font font = Font::load(path);  Font::default_path();         // Liberation Sans found on the system
//   HeaderLayout layout = layout_header(question, font);         // lines, Pillow textbbox, header size
//   Image header = render_header_text(question, font);           // render_text: black on white, size 36
//   Image composed = render_question(image, question, font_path); // render_header: header above image
// All throw pix2struct::Error (font not found or unreadable, question not valid UTF-8).
//
// What is exact and what is not (tests/test_header.cpp measures it):
//  * line breaking is Python 3.11 textwrap's algorithm (tabs, whitespace, hyphen and em-dash splitting,
//    long words cut at 80 code points); Unicode `\w` is approximated by script ranges (detail::is_word_char);
//  * the layout (header width and height) follows Pillow 13 with libraqm/HarfBuzz: unhinted 26.6
//    advances plus GPOS kerning inside raqm's script runs (detail::resolve_scripts), each glyph at the
//    rounded pen position, the box the union of glyph pixel
//    boxes and the pen line, lines `getbbox("A")[3] + 4` apart. FreeType's hinted vertical extents come
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
#include <array>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <stb_truetype.h>

// Optional: with PIX2STRUCT_WITH_FREETYPE defined (and FreeType linked) glyph extents and pixels come from
// FreeType's hinter and rasteriser, as in Pillow, instead of stb_truetype and the extent table.
#ifdef PIX2STRUCT_WITH_FREETYPE
#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_GLYPH_H
#endif

#include "pix2struct/error.hpp"
#include "pix2struct/image/detail/liberation_sans_36.hpp"
#include "pix2struct/image/detail/liberation_sans_36_outlines.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/resample.hpp"

namespace pix2struct {

// render_text's parameters (transformers image_processing_pix2struct.py).
inline constexpr int kHeaderTextSize = 36;
inline constexpr int kHeaderPadding = 5;      // left, right, top and bottom
inline constexpr int kHeaderWrapWidth = 80;   // textwrap.TextWrapper(width=80)
inline constexpr int kPillowLineSpacing = 4;  // ImageDraw.text's default `spacing`

namespace detail {

// ---------------------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------------------
inline std::u32string utf8_decode(std::string_view s, std::string_view what) {
    std::u32string out;
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (n < 0 || i + n >= s.size()) fail(what, ": not valid UTF-8 at byte ", i);
        char32_t cp = n == 0 ? c : n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k <= n; ++k) {
            const unsigned char d = s[i + k];
            if ((d >> 6) != 2) fail(what, ": not valid UTF-8 at byte ", i + k);
            cp = (cp << 6) | (d & 0x3F);
        }
        static constexpr char32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            fail(what, ": not valid UTF-8 at byte ", i);
        out.push_back(cp);
        i += n + 1;
    }
    return out;
}

inline std::string utf8_encode(std::u32string_view s) {
    std::string out;
    for (char32_t c : s) {
        if (c < 0x80) {
            out += char(c);
        } else if (c < 0x800) {
            out += char(0xC0 | (c >> 6));
            out += char(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += char(0xE0 | (c >> 12));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        } else {
            out += char(0xF0 | (c >> 18));
            out += char(0x80 | ((c >> 12) & 0x3F));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// Python textwrap (3.11), TextWrapper(width=80) with its defaults
// ---------------------------------------------------------------------------------------------------------

// textwrap._whitespace = '\t\n\x0b\x0c\r ' (ASCII only: NBSP and other Unicode spaces are not split on).
inline bool is_wrap_space(char32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Python's str.isspace(), used by `chunk.strip() == ''` when dropping blank chunks.
inline bool is_py_space(char32_t c) {
    return (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// `\d` of Python's re for str (Unicode decimal digits; the common scripts).
inline bool is_decimal_digit(char32_t c) {
    static constexpr char32_t kZeros[] = {0x30,   0x660,  0x6F0,  0x7C0,  0x966,  0x9E6,  0xA66,  0xAE6,
                                          0xB66,  0xBE6,  0xC66,  0xCE6,  0xD66,  0xE50,  0xED0,  0xF20,
                                          0x1040, 0x17E0, 0x1810, 0xFF10, 0x1D7CE};
    for (char32_t z : kZeros)
        if (c >= z && c < z + 10) return true;
    return false;
}

// `\w` of Python's re for str: str.isalnum() or '_'. Exact for ASCII and Latin-1; elsewhere letters and
// digits are taken by script range, excluding the punctuation, symbol, mark and space blocks.
inline bool is_word_char(char32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
    if (c < 0x100)
        return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA ||
               (c >= 0xBC && c <= 0xBE) || (c >= 0xC0 && c != 0xD7 && c != 0xF7);
    if (is_py_space(c)) return false;
    struct Range { char32_t lo, hi; };
    static constexpr Range kNotWord[] = {
        {0x2C2, 0x2C5}, {0x2D2, 0x2DF}, {0x2E5, 0x2EB}, {0x2ED, 0x2ED}, {0x2EF, 0x36F},  // modifiers, marks
        {0x375, 0x375}, {0x37E, 0x37E}, {0x384, 0x385}, {0x387, 0x387}, {0x3F6, 0x3F6},  // Greek punct.
        {0x482, 0x489}, {0x55A, 0x55F}, {0x589, 0x58A}, {0x591, 0x5CF}, {0x5F3, 0x5F4},  // Cyr./Arm./Heb.
        {0x600, 0x61F}, {0x64B, 0x65F}, {0x66A, 0x66D}, {0x6D4, 0x6D4}, {0x6D6, 0x6ED},  // Arabic
        {0x900, 0x903}, {0x93A, 0x94F}, {0x951, 0x957}, {0x962, 0x965}, {0x970, 0x970},  // Devanagari
        {0x2000, 0x206F}, {0x20A0, 0x20FF}, {0x2100, 0x2101}, {0x2103, 0x2106}, {0x2108, 0x2109},
        {0x2114, 0x2114}, {0x2116, 0x2118}, {0x211E, 0x2123}, {0x2125, 0x2125}, {0x2127, 0x2127},
        {0x2129, 0x2129}, {0x212E, 0x212E}, {0x213A, 0x213B}, {0x2140, 0x2144}, {0x214A, 0x214D},
        {0x214F, 0x214F}, {0x2190, 0x245F}, {0x2500, 0x2775}, {0x2794, 0x2BFF}, {0x2E00, 0x2E7F},
        {0x3000, 0x3004}, {0x3008, 0x3020}, {0x302A, 0x3030}, {0x3036, 0x3037}, {0x303D, 0x303F},
        {0x3099, 0x309C}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0xD800, 0xF8FF}, {0xFE00, 0xFE6F},
        {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0xFFE0, 0xFFFF},
        {0x1F000, 0x1FBFF}, {0xE0000, 0x10FFFF}};
    for (const Range& r : kNotWord)
        if (c >= r.lo && c <= r.hi) return false;
    return true;
}

inline bool is_letter(char32_t c) { return is_word_char(c) && !is_decimal_digit(c); }  // [^\d\W]
inline bool is_word_punct(char32_t c) {  // [\w!"\'&.,?]
    return is_word_char(c) || c == '!' || c == '"' || c == '\'' || c == '&' || c == '.' || c == ',' || c == '?';
}

// TextWrapper._split with break_on_hyphens: the chunks that `wordsep_re` matches, one alternative at a
// time in the regex's order (whitespace run | em-dash | lazily matched word ending at a hyphen split,
// whitespace/end, or before an em-dash).
inline std::vector<std::u32string> textwrap_chunks(const std::u32string& t) {
    const size_t n = t.size();
    auto at = [&](size_t i) -> char32_t { return i < n ? t[i] : 0; };
    // Length of a run of >= 2 hyphens at i followed by a word character (`-{2,}(?=\w)`), or 0.
    auto emdash = [&](size_t i) -> size_t {
        size_t j = i;
        while (j < n && t[j] == '-') ++j;
        return (j - i >= 2 && j < n && is_word_char(t[j])) ? j - i : 0;
    };
    std::vector<std::u32string> chunks;
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        if (is_wrap_space(t[i])) {  // %(ws)s+
            while (end < n && is_wrap_space(t[end])) ++end;
        } else if (i > 0 && is_word_punct(t[i - 1]) && emdash(i)) {  // (?<=%(wp)s) -{2,} (?=\w)
            end = i + emdash(i);
        } else {  // %(nws)s+? (?: hyphenated | end of word | before an em-dash )
            for (size_t j = i + 1;; ++j) {
                // -(?: (?<=%(lt)s{2}-) | (?<=%(lt)s-%(lt)s-)) (?= %(lt)s -? %(lt)s)
                if (at(j) == '-') {
                    const bool behind = (j >= 2 && is_letter(at(j - 2)) && is_letter(at(j - 1))) ||
                                        (j >= 3 && is_letter(at(j - 3)) && at(j - 2) == '-' && is_letter(at(j - 1)));
                    const bool ahead = is_letter(at(j + 1)) &&
                                       (is_letter(at(j + 2)) || (at(j + 2) == '-' && is_letter(at(j + 3))));
                    if (behind && ahead) {
                        end = j + 1;
                        break;
                    }
                }
                if (j >= n || is_wrap_space(t[j])) {  // (?=%(ws)s|\Z)
                    end = j;
                    break;
                }
                if (is_word_punct(t[j - 1]) && emdash(j)) {  // (?<=%(wp)s) (?=-{2,}\w)
                    end = j;
                    break;
                }
            }
        }
        chunks.emplace_back(t.substr(i, end - i));
        i = end;
    }
    return chunks;
}

inline bool is_blank(const std::u32string& s) {  // chunk.strip() == ''
    return std::all_of(s.begin(), s.end(), is_py_space);
}

}  // namespace detail

// textwrap.TextWrapper(width).wrap(text): the header's lines. Widths count code points.
inline std::vector<std::string> wrap_text(std::string_view text_utf8, int width = kHeaderWrapWidth) {
    const std::u32string raw = detail::utf8_decode(text_utf8, "question");
    // _munge_whitespace: expandtabs(8) (column-based, reset by \n and \r), then each whitespace -> ' '.
    std::u32string text;
    size_t column = 0;
    for (char32_t c : raw) {
        if (c == '\t') {
            const size_t pad = 8 - column % 8;
            text.append(pad, U' ');
            column += pad;
        } else {
            text.push_back(detail::is_wrap_space(c) ? U' ' : c);
            column = (c == '\n' || c == '\r') ? 0 : column + 1;
        }
    }
    std::vector<std::u32string> chunks = detail::textwrap_chunks(text);
    std::reverse(chunks.begin(), chunks.end());

    // _wrap_chunks with drop_whitespace, break_long_words and break_on_hyphens.
    std::vector<std::string> lines;
    const size_t w = size_t(std::max(width, 1));
    while (!chunks.empty()) {
        std::vector<std::u32string> cur;
        size_t cur_len = 0;
        if (detail::is_blank(chunks.back()) && !lines.empty()) chunks.pop_back();  // not on the first line
        while (!chunks.empty() && cur_len + chunks.back().size() <= w) {
            cur_len += chunks.back().size();
            cur.push_back(std::move(chunks.back()));
            chunks.pop_back();
        }
        if (!chunks.empty() && chunks.back().size() > w) {
            // _handle_long_word: cut at the space left, or just after the last hyphen before it. The space
            // left may be 0 (a full line): Python then appends an empty piece, which drop_whitespace removes
            // instead of the line's trailing blank, so that blank stays.
            const size_t space_left = w - cur_len;  // width >= 1 here, so no `max(1, ...)` as in Python
            std::u32string& chunk = chunks.back();
            size_t end = space_left;
            if (chunk.size() > space_left && space_left > 0) {
                const size_t hyphen = chunk.rfind(U'-', space_left - 1);  // chunk.rfind('-', 0, space_left)
                if (hyphen != std::u32string::npos && hyphen > 0 &&
                    std::any_of(chunk.begin(), chunk.begin() + hyphen, [](char32_t c) { return c != '-'; }))
                    end = hyphen + 1;
            }
            cur.push_back(chunk.substr(0, end));
            chunk.erase(0, end);
        }
        if (!cur.empty() && detail::is_blank(cur.back())) cur.pop_back();
        if (!cur.empty()) {
            std::u32string line;
            for (const auto& c : cur) line += c;
            lines.push_back(detail::utf8_encode(line));
        }
    }
    return lines;
}

// A TrueType font file in memory, ready for stb_truetype, plus what Pillow's FreeType would report.
class Font {
public:
    static Font load(const std::filesystem::path& path) {
        Font f;
        f.path_ = path;
        std::ifstream in(path, std::ios::binary | std::ios::ate);
        if (!in) detail::fail(path.string(), ": cannot open the header font");
        const std::streamoff size = in.tellg();
        if (size <= 0) detail::fail(path.string(), ": the header font file is empty");
        auto data = std::make_shared<std::vector<unsigned char>>(size_t(size));
        in.seekg(0);
        if (!in.read(reinterpret_cast<char*>(data->data()), size))
            detail::fail(path.string(), ": cannot read the header font");
        f.data_ = data;
        const int offset = stbtt_GetFontOffsetForIndex(data->data(), 0);
        if (offset < 0 || !stbtt_InitFont(&f.info_, data->data(), offset))
            detail::fail(path.string(), ": not a TrueType/OpenType font stb_truetype can read");
        f.units_per_em_ = ttUSHORT(data->data() + offset + f.info_.head + 18);
        if (f.units_per_em_ <= 0) detail::fail(path.string(), ": the font's unitsPerEm is 0");
        const uint32_t checksum = ttULONG(data->data() + offset + f.info_.head + 8);
        f.hinted_table_ = data->size() == detail::liberation_sans_36::kFileSize &&
                          checksum == detail::liberation_sans_36::kHeadChecksumAdjustment;
#ifdef PIX2STRUCT_WITH_FREETYPE
        FT_Library lib = nullptr;
        if (FT_Init_FreeType(&lib)) detail::fail(path.string(), ": cannot initialise FreeType");
        f.ft_library_ = std::shared_ptr<FT_LibraryRec_>(lib, FT_Done_FreeType);
        FT_Face face = nullptr;
        if (FT_New_Memory_Face(lib, data->data(), FT_Long(data->size()), 0, &face))
            detail::fail(path.string(), ": FreeType cannot read the font");
        f.ft_face_ = std::shared_ptr<FT_FaceRec_>(face, FT_Done_Face);  // destroyed before the library
#endif
        return f;
    }

    // The default header font: $PIX2STRUCT_FONT, else Liberation Sans Regular (metric-compatible with
    // the reference's Arial) in the usual system locations.
    static std::filesystem::path default_path() {
        if (const char* env = std::getenv("PIX2STRUCT_FONT"); env && *env) return env;
        static constexpr const char* kCandidates[] = {
            "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",  // Debian, Ubuntu
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",       // Fedora
            "/usr/share/fonts/liberation-sans-fonts/LiberationSans-Regular.ttf",
            "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",            // Arch
            "/usr/share/fonts/TTF/LiberationSans-Regular.ttf",
            "/usr/local/share/fonts/LiberationSans-Regular.ttf",
            "/opt/homebrew/share/fonts/LiberationSans-Regular.ttf",
            "/Library/Fonts/LiberationSans-Regular.ttf"};
        for (const char* p : kCandidates)
            if (std::error_code ec; std::filesystem::exists(p, ec)) return p;
        detail::fail("header font: Liberation Sans Regular (LiberationSans-Regular.ttf) was not found in the "
                     "usual font folders; install it (Debian: fonts-liberation2) or give a .ttf path "
                     "(PreprocessOptions::font_path or $PIX2STRUCT_FONT)");
    }

    const std::filesystem::path& path() const { return path_; }
    const stbtt_fontinfo& info() const { return info_; }
    int units_per_em() const { return units_per_em_; }
    // True when this is the font the hinted-extent table was generated for.
    bool has_hinted_table() const { return hinted_table_; }
#ifdef PIX2STRUCT_WITH_FREETYPE
    // FreeType's face at `size` pixels (FT_Request_Size nominal, as Pillow's FreeTypeFont does).
    FT_Face freetype_face(int size) const {
        FT_Face face = ft_face_.get();
        if (FT_Set_Pixel_Sizes(face, 0, FT_UInt(size))) detail::fail(path_.string(), ": FreeType cannot size the font");
        return face;
    }
#endif

private:
    static uint16_t ttUSHORT(const unsigned char* p) { return uint16_t(p[0] << 8 | p[1]); }
    static uint32_t ttULONG(const unsigned char* p) {
        return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
    }
    std::filesystem::path path_;
    std::shared_ptr<const std::vector<unsigned char>> data_;  // shared: stb and FreeType point into it
    stbtt_fontinfo info_{};
    int units_per_em_ = 0;
    bool hinted_table_ = false;
#ifdef PIX2STRUCT_WITH_FREETYPE
    std::shared_ptr<FT_LibraryRec_> ft_library_;  // declared before the face: destroyed after it
    std::shared_ptr<FT_FaceRec_> ft_face_;
#endif
};

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
inline int pixel_floor(int64_t x26) { return int((x26 & -64) >> 6); }

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
    for (size_t i = 0; i < line.size(); ++i) {
        const char32_t cp = line[i];
        const int g = stbtt_FindGlyphIndex(info, int(cp));  // 0 (.notdef) when the font lacks it, as HarfBuzz
        // HarfBuzz kerns within a script run only (and not at all in some scripts' runs).
        if (prev >= 0 && scripts[i] == scripts[i - 1] && script_kerns(scripts[i])) {
            const int kern = stbtt_GetGlyphKernAdvance(info, prev, g);  // font units
            // hb_font_t::em_scale: (v * em_mult + 32768) >> 16, em_mult = (x_scale_26.6 << 16) / upem.
            const int64_t scale26 = (s.x_scale * font.units_per_em() + 32768) >> 16;  // hb x_scale
            const int64_t em_mult = (scale26 << 16) / font.units_per_em();
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
    bool first = true;
    for (size_t i = 0; i < h.lines.size(); ++i) {
        const std::u32string line = utf8_decode(h.lines[i], "question");
        LineLayout ll = layout_line(font, p.scale, size, line);
        const int y = int(i) * spacing;
        // get_bbox: union of the lines' boxes (getbbox left is min(0, ink left): 0 for our purposes).
        const int l = 0, t = ll.top + y, r = ll.right, b = ll.bottom + y;
        if (first) {
            h.left = l, h.top = t, h.right = r, h.bottom = b;
            first = false;
        } else {
            h.left = std::min(h.left, l), h.top = std::min(h.top, t);
            h.right = std::max(h.right, r), h.bottom = std::max(h.bottom, b);
        }
        h.line_y.push_back(y);
        p.lines.push_back(std::move(ll));
    }
    // render_text: text_width/height are the bbox's right and bottom (not right - left), plus padding.
    h.width = h.right + 2 * kHeaderPadding;
    h.height = h.bottom + 2 * kHeaderPadding;
    return p;
}

// Pillow's integer blends (libImaging/ImPlatform.h / Draw.c).
inline uint8_t muldiv255(int a, int b) {
    const int t = a * b + 128;
    return uint8_t(((t >> 8) + t) >> 8);
}


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
    std::vector<stbtt_vertex> verts;  // 1/256 pixel, lines only
    auto emit = [&](unsigned char type, int64_t x, int64_t y) {
        stbtt_vertex v{};
        v.type = type;
        v.x = stbtt_vertex_type(x);
        v.y = stbtt_vertex_type(y);
        verts.push_back(v);
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
    stbtt_Rasterize(&bm, 0.35f, verts.data(), int(verts.size()), 1.f / 256, 1.f / 256, 0.f, 0.f, out.left,
                    -out.top, 1, nullptr);
    return true;
}

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
    if (out.width <= 0 || out.height <= 0) {
        stbtt_FreeShape(info, v);
        return false;
    }
    out.pixels.assign(size_t(out.width) * out.height, 0);
    stbtt__bitmap bm{out.width, out.height, out.width, out.pixels.data()};
    stbtt_Rasterize(&bm, 0.02f, v, n, scale, scale, 0.f, 0.f, out.left, -out.top, 1, nullptr);
    stbtt_FreeShape(info, v);
    return true;
}

}  // namespace detail

inline HeaderLayout layout_header(std::string_view question, const Font& font, int size = kHeaderTextSize) {
    return detail::plan_header(question, font, size).layout;
}

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
    for (size_t li = 0; li < p.lines.size(); ++li) {
        // The line's mask, in image coordinates (glyph pixel boxes may overlap: merge them first).
        std::vector<uint8_t> mask(size_t(out.width) * out.height, 0);
        const int base_y = kHeaderPadding + p.layout.line_y[li] + p.scale.ascender;  // baseline row
        for (const detail::PlacedGlyph& g : p.lines[li].glyphs) {
            if (!detail::rasterize_glyph(font, p.scale, size, scale, g, bitmap)) continue;
            const int x0 = bitmap.left, y0 = -bitmap.top, w = bitmap.width, h = bitmap.height;
            const int ox = kHeaderPadding + g.px + x0, oy = base_y + y0;
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
        for (size_t i = 0; i < mask.size(); ++i) {
            if (mask[i] == 0) continue;
            for (int c = 0; c < 3; ++c) {
                uint8_t& v = out.rgb[i * 3 + c];
                v = detail::muldiv255(v, 255 - mask[i]);  // ink 0: DIV255(v * (255 - m) + 0 * m)
            }
        }
    }
    return out;
}

// transformers render_header(image, question): the header resized to the wider of the two widths above
// the image resized to that width, heights int(h * new_width / w), both with Pillow's default (bicubic)
// resize, pasted on a white canvas.
inline Image render_question(const Image& image, std::string_view question, const std::string& font_path) {
    if (image.empty()) detail::fail("render_question: the image is empty");
    const Font font = Font::load(font_path.empty() ? Font::default_path() : std::filesystem::path(font_path));
    const Image header = render_header_text(question, font);
    const int new_width = std::max(header.width, image.width);
    // int(image.height * (new_width / image.width)) — Python float division, then truncation.
    const int new_height = int(double(image.height) * (double(new_width) / double(image.width)));
    const int new_header_height = int(double(header.height) * (double(new_width) / double(header.width)));
    Image out;
    out.width = new_width;
    out.height = new_height + new_header_height;
    out.rgb.assign(size_t(out.width) * out.height * 3, 255);
    if (new_header_height > 0) {
        const Image h = resize_bicubic(header, new_width, new_header_height);
        std::copy(h.rgb.begin(), h.rgb.end(), out.rgb.begin());
    }
    if (new_height > 0) {
        const Image im = resize_bicubic(image, new_width, new_height);
        std::copy(im.rgb.begin(), im.rgb.end(), out.rgb.begin() + size_t(new_header_height) * new_width * 3);
    }
    return out;
}

}  // namespace pix2struct
