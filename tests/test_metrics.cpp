// pix2struct/metrics.hpp on cases worked out by hand from google-research/pix2struct's metrics.py (and
// Python's float() for the numbers).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "pix2struct/metrics.hpp"

using namespace pix2struct::metrics;

TEST_CASE("python_float reads numbers as Python's float() does") {
    CHECK(python_float("1e3") == 1000.0);
    CHECK(python_float(" -2.5e-1\n") == -0.25);
    CHECK(python_float(".5") == 0.5);
    CHECK(python_float("5.") == 5.0);
    CHECK(python_float("+7") == 7.0);
    CHECK(python_float("1_000.5") == 1000.5);
    CHECK(python_float("1e1_0") == 1e10);
    CHECK(python_float("1e400") == HUGE_VAL);
    CHECK(python_float("-1e400") == -HUGE_VAL);
    CHECK(python_float("1e-400") == 0.0);
    CHECK(python_float("Infinity") == HUGE_VAL);
    CHECK(python_float("-inf") == -HUGE_VAL);
    CHECK(std::isnan(*python_float("NaN")));
    for (const char* no : {"", " ", ".", "e5", "1e", "1e+", "_1", "1_", "1__0", "1_.5", "0x10", "1,000", "12abc", "+-1",
                           "5%", "inf inity", "1 2"}) {
        CAPTURE(no);
        CHECK_FALSE(python_float(no).has_value());
    }
}

TEST_CASE("exact match: the strings are equal") {
    CHECK(exact_match("pupa", "pupa"));
    CHECK_FALSE(exact_match("Pupa", "pupa"));
    CHECK_FALSE(exact_match("pupa ", "pupa"));
}

TEST_CASE("relaxed correctness (ChartQA): numbers within 5% of a nonzero gold, else equal ignoring case") {
    CHECK(relaxed_correctness("100", "104"));
    CHECK(relaxed_correctness("100", "105"));        // exactly 5%
    CHECK(relaxed_correctness("100", "95"));
    CHECK_FALSE(relaxed_correctness("100", "105.1"));
    CHECK(relaxed_correctness("-20", "-21"));
    CHECK_FALSE(relaxed_correctness("-20", "21"));
    CHECK(relaxed_correctness("5%", "0.05"));        // a percentage is divided by 100
    CHECK_FALSE(relaxed_correctness("5%", "5"));
    CHECK(relaxed_correctness("12.5%", "12.5%"));
    CHECK(relaxed_correctness(" 12 ", "12"));        // float() takes spaces around
    CHECK(relaxed_correctness("1_000", "1000"));
    CHECK_FALSE(relaxed_correctness("1,000", "1000"));  // not a number: compared as text
    CHECK(relaxed_correctness("0", "0"));            // a gold of 0 is compared as text
    CHECK_FALSE(relaxed_correctness("0", "0.0"));
    CHECK(relaxed_correctness("Red", "red"));
    CHECK_FALSE(relaxed_correctness("red", "reds"));
    CHECK_FALSE(relaxed_correctness("nan", "nan"));  // |nan − nan| ≤ 0.05 is false, as in Python
    CHECK_FALSE(relaxed_correctness("inf", "inf"));
}

TEST_CASE("edit distance and ANLS (DocVQA)") {
    CHECK(edit_distance("kitten", "sitting") == 3);
    CHECK(edit_distance("", "abc") == 3);
    CHECK(edit_distance("café", "cafe") == 1);  // code points, not bytes (bytes: 2)
    CHECK(anls("the larva", "the larvae") == doctest::Approx(0.9));
    CHECK(anls("Pupa", "pUPA") == 1.0);           // lower-cased
    CHECK(anls("abcd", "abxy") == 0.5);           // distance 2 of 4: still counts (≤ 0.5)
    CHECK(anls("abcd", "axyz") == 0.0);           // 3 of 4
    CHECK(anls("café", "cafe") == 0.75);          // 1 of 4 code points
    CHECK(anls("", "") == 1.0);
    CHECK(anls("abc", "") == 0.0);
}

TEST_CASE("Scores: each answer counts its best gold; percentages as metrics.py reports them") {
    Scores s;
    s.add("104", {"100", "105"});  // exact 0, relaxed 1, ANLS 1 − 1/3 (one edit of three to either)
    s.add("pupa", {"pupa"});      // 1, 1, 1
    s.add("lava", {"Lava flow", "magma"});  // 0, 0, ANLS 0 (5 edits of 9, 3 of 5: both past half)
    CHECK(s.count == 3);
    CHECK(s.percent(s.exact) == doctest::Approx(100.0 / 3));
    CHECK(s.percent(s.relaxed) == doctest::Approx(200.0 / 3));
    CHECK(s.percent(s.anls) == doctest::Approx(100.0 * (2.0 / 3 + 1) / 3));
    CHECK(Scores{}.percent(0) == 0.0);
}
