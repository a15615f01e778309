// pix2struct/metrics.hpp — how answers are scored against gold answers on the Pix2Struct paper's benchmarks,
// as google-research/pix2struct's metrics.py computes them:
//
//   exact_match("pupa", "pupa") → true                      (AI2D, OCR-VQA, …: the strings are equal)
//   relaxed_correctness("100", "104") → true                (ChartQA: a number within 5% of the gold, else
//   relaxed_correctness("Red", "red") → true                 the strings equal ignoring case)
//   anls("the larva", "the larvae") → 0.9                   (DocVQA, InfographicVQA: 1 − normalised
//                                                             Levenshtein distance, 0 past 0.5)
//   Scores s; s.add("104", {"100", "105"}); s.percent(s.relaxed) → 100   (the best gold counts, as there)
//
// Details that decide close cases, each as metrics.py has it:
//  - numbers read as Python's float() reads them (spaces around, a sign, '_' between digits, an exponent,
//    inf and nan), after a trailing '%' is taken off and the value divided by 100 ("5%" is 0.05, and is not 5);
//    a gold of 0 (or one that is not a number) is compared as text;
//  - ANLS lower-cases both strings and counts edits in Unicode code points; a distance of exactly half the
//    longer string still scores 0.5 (the DocVQA task page says "< 0.5"; metrics.py has "<=");
//  - letters are lower-cased in ASCII only (Python's str.lower() also folds other scripts);
//  - an empty answer against an empty gold has ANLS 1 (metrics.py divides by zero there).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pix2struct::metrics {

inline bool exact_match(std::string_view prediction, std::string_view target) { return prediction == target; }

inline std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

// The number in `text` as Python's float(text) reads it, nullopt when it reads none.
inline std::optional<double> python_float(std::string_view text) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    double sign = 1;
    if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
        sign = text.front() == '-' ? -1 : 1;
        text.remove_prefix(1);
    }
    const std::string word = ascii_lower(text);
    if (word == "inf" || word == "infinity") return sign * HUGE_VAL;
    if (word == "nan") return std::nan("");
    // digits ('_' only between two digits), an optional '.', digits, an optional exponent
    std::string plain;
    size_t i = 0, mantissa_digits = 0;
    auto digits = [&](size_t& count) {
        while (i < text.size()) {
            const char c = text[i];
            if (c >= '0' && c <= '9') {
                plain.push_back(c);
                ++count;
                ++i;
            } else if (c == '_' && i > 0 && text[i - 1] >= '0' && text[i - 1] <= '9' && i + 1 < text.size() &&
                       text[i + 1] >= '0' && text[i + 1] <= '9') {
                ++i;
            } else {
                break;
            }
        }
    };
    digits(mantissa_digits);
    if (i < text.size() && text[i] == '.') {
        plain.push_back('.');
        ++i;
        digits(mantissa_digits);
    }
    if (mantissa_digits == 0) return std::nullopt;
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        plain.push_back('e');
        ++i;
        if (i < text.size() && (text[i] == '+' || text[i] == '-')) plain.push_back(text[i++]);
        size_t exponent_digits = 0;
        digits(exponent_digits);
        if (exponent_digits == 0) return std::nullopt;
    }
    if (i != text.size()) return std::nullopt;
    double value = 0;
    const auto [end, ec] = std::from_chars(plain.data(), plain.data() + plain.size(), value);
    if (ec == std::errc::result_out_of_range) {  // Python: inf past the largest double, 0 below the smallest
        const size_t e = plain.find('e');
        value = e != std::string::npos && e + 1 < plain.size() && plain[e + 1] == '-' ? 0.0 : HUGE_VAL;
    } else if (ec != std::errc() || end != plain.data() + plain.size()) return std::nullopt;
    return sign * value;
}

// ChartQA's relaxed accuracy for one answer: within max_relative_change of a numeric gold, else equal
// ignoring case.
inline bool relaxed_correctness(std::string_view target, std::string_view prediction, double max_relative_change = 0.05) {
    auto to_float = [](std::string_view text) -> std::optional<double> {
        if (!text.empty() && text.back() == '%') {
            while (!text.empty() && text.back() == '%') text.remove_suffix(1);
            const std::optional<double> v = python_float(text);
            return v ? std::optional<double>(*v / 100.0) : std::nullopt;
        }
        return python_float(text);
    };
    const std::optional<double> p = to_float(prediction), t = to_float(target);
    if (p && t && *t != 0) return std::abs(*p - *t) / std::abs(*t) <= max_relative_change;  // NaN: false
    return ascii_lower(prediction) == ascii_lower(target);
}

// The Unicode code points of UTF-8 text (a byte that starts no valid sequence counts as one).
inline std::vector<char32_t> code_points(std::string_view s) {
    std::vector<char32_t> out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const int n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
        bool ok = n > 0 && i + size_t(n) <= s.size();
        char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
        for (int k = 1; ok && k < n; ++k) {
            const auto cont = static_cast<unsigned char>(s[i + size_t(k)]);
            ok = (cont & 0xC0) == 0x80;
            c = (c << 6) | (cont & 0x3F);
        }
        out.push_back(ok ? c : char32_t(0xDC00 + b));  // an invalid byte: a code point no valid text has
        i += ok ? size_t(n) : 1;
    }
    return out;
}

// The Levenshtein distance (insertions, deletions, substitutions of one code point each).
inline size_t edit_distance(std::string_view a, std::string_view b) {
    const std::vector<char32_t> x = code_points(a), y = code_points(b);
    std::vector<size_t> row(y.size() + 1);
    for (size_t j = 0; j <= y.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= x.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= y.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (x[i - 1] == y[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[y.size()];
}

// Average Normalised Levenshtein Similarity of one answer (DocVQA), on lower-cased strings.
inline double anls(std::string_view target, std::string_view prediction, double theta = 0.5) {
    const std::string t = ascii_lower(target), p = ascii_lower(prediction);
    const size_t longest = std::max(code_points(t).size(), code_points(p).size());
    if (longest == 0) return 1.0;
    const double distance = double(edit_distance(t, p)) / double(longest);
    return distance <= theta ? 1.0 - distance : 0.0;
}

// The three metrics over a dataset: each answer scores its best gold; percent() as metrics.py reports them.
struct Scores {
    int64_t count = 0;
    double exact = 0, relaxed = 0, anls = 0;  // sums over the answers

    void add(std::string_view prediction, const std::vector<std::string>& golds) {
        double e = 0, r = 0, a = 0;
        for (const std::string& g : golds) {
            e = std::max(e, exact_match(prediction, g) ? 1.0 : 0.0);
            r = std::max(r, relaxed_correctness(g, prediction) ? 1.0 : 0.0);
            a = std::max(a, metrics::anls(g, prediction));
        }
        ++count;
        exact += e;
        relaxed += r;
        anls += a;
    }
    double percent(double sum) const { return count == 0 ? 0.0 : 100.0 * sum / double(count); }
};

}  // namespace pix2struct::metrics
