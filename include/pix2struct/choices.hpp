// pix2struct/choices.hpp — the options of a multiple-choice question, as the datasets write them inside it:
//
//   parse_choices("What does label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud")
//       → {"lava", "core", "tunnel", "ash cloud"}                                      (AI2D's style)
//   parse_choices("Which is larger? A. the sun B. the moon")   → {"the sun", "the moon"}
//   parse_choices("Pick one: a) red b) green c) blue")          → {"red", "green", "blue"}
//
// Markers are numbered in order from 1 (or A / a): "(1) ", "(2) ", …; "A. ", "B. ", …; "a) ", "b) ", …, each at
// the start of the text or after a space. An option runs to the next marker (trailing spaces and a trailing
// , or ; dropped), so parentheses and numbers inside an option are kept. When marker 1 occurs more than once
// (the question itself says "(1)"), the reading with the most options wins, then the later one. The
// numbered style takes a single option; the letter styles need two (one "A. " is too often plain text).
// No options found: an empty list.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pix2struct {

namespace detail {
// The options after each occurrence of marker(1) (see the file comment); the best reading.
template <class Marker>
std::vector<std::string> choices_with(std::string_view q, Marker marker, size_t min_options) {
    auto find_marker = [&](int k, size_t from) {
        const std::string m = marker(k);
        for (size_t at = q.find(m, from); at != std::string_view::npos; at = q.find(m, at + 1))
            if (at == 0 || q[at - 1] == ' ') return at;
        return std::string_view::npos;
    };
    auto trimmed = [](std::string_view s) {
        while (!s.empty() && (s.back() == ' ' || s.back() == ',' || s.back() == ';' || s.back() == '\n')) s.remove_suffix(1);
        while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
        return std::string(s);
    };
    std::vector<std::string> best;
    for (size_t first = find_marker(1, 0); first != std::string_view::npos; first = find_marker(1, first + 1)) {
        std::vector<std::string> options;
        size_t at = first;
        for (int k = 1;; ++k) {
            const size_t begin = at + marker(k).size();
            const size_t next = find_marker(k + 1, begin);
            options.push_back(trimmed(q.substr(begin, next == std::string_view::npos ? std::string_view::npos : next - begin)));
            if (next == std::string_view::npos || k >= 26) break;
            at = next;
        }
        if (options.size() >= best.size()) best = std::move(options);
    }
    for (const std::string& o : best)
        if (o.empty()) return {};
    return best.size() >= min_options ? best : std::vector<std::string>{};
}
}  // namespace detail

inline std::vector<std::string> parse_choices(std::string_view question) {
    std::vector<std::string> best;
    auto consider = [&](std::vector<std::string> found) {
        if (found.size() > best.size()) best = std::move(found);
    };
    // (the markers are built with append: GCC 12 warns falsely (-Wrestrict) on a chain of operator+)
    consider(detail::choices_with(question, [](int k) { return std::string("(").append(std::to_string(k)).append(") "); }, 1));
    consider(detail::choices_with(question, [](int k) { return std::string(1, char('A' + k - 1)).append(". "); }, 2));
    consider(detail::choices_with(question, [](int k) { return std::string(1, char('a' + k - 1)).append(") "); }, 2));
    return best;
}

}  // namespace pix2struct
