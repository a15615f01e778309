// pix2struct/image/text_wrap.hpp — Python 3.11's textwrap.TextWrapper(width).wrap on UTF-8 text: the
// header's line breaking (tabs expanded, whitespace made spaces, chunks split on whitespace and after
// hyphens, blanks dropped at line ends, words longer than the width cut). Widths count code points.
//
//   std::vector<std::string> wrap_text(text, width = 80);   // throws pix2struct::Error on invalid UTF-8
//
// Unicode `\w` (for the hyphen and em-dash rules) is approximated by script ranges (detail::is_word_char).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/error.hpp"

namespace pix2struct {

inline constexpr int kHeaderWrapWidth = 80;  // render_text: textwrap.TextWrapper(width=80)

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

}  // namespace pix2struct
