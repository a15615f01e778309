// Fonts from untrusted files: the structure check in front of stb_truetype (detail/sfnt_check.hpp).
// The small fonts are built table by table by tests/fuzz/make_corpus.py (their seed corpus); the glyph
// ids, advances and kerning values asserted here are the ones that script wrote into them.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>

#include "pix2struct/image/header.hpp"

namespace fs = std::filesystem;
using pix2struct::Font;

namespace {

const fs::path kFonts = fs::path(PIX2STRUCT_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "font";

std::string refusal(const fs::path& path) {
    try {
        (void)Font::load(path);
    } catch (const pix2struct::Error& e) {
        return e.what();
    }
    return {};
}

int advance(const Font& f, int glyph) {
    int adv = 0, lsb = 0;
    stbtt_GetGlyphHMetrics(&f.info(), glyph, &adv, &lsb);
    return adv;
}

}  // namespace

TEST_CASE("the built fonts load: cmap formats 0, 4, 6 and 12, kern and GPOS pairs, composite glyphs") {
    for (const char* name : {"cmap4_kern.ttf", "cmap12_gpos_longloca.ttf", "cmap6_kern_gpos.ttf", "cmap0_one_metric.ttf"}) {
        CAPTURE(name);
        const Font f = Font::load(kFonts / name);
        for (char32_t cp = U'A'; cp <= U'D'; ++cp) CHECK(f.glyph_index(cp) == int(cp - U'A' + 1));
        CHECK(f.glyph_index(U'Z') == 0);
        const bool gpos = std::string(name).find("gpos") != std::string::npos;
        // GPOS, when present, is the only source of kerning (as in stb_truetype and HarfBuzz).
        CHECK(stbtt_GetGlyphKernAdvance(&f.info(), 1, 2) == (gpos ? -50 : -40));
        CHECK(stbtt_GetGlyphKernAdvance(&f.info(), 2, 3) == (gpos ? -30 : 25));
        const bool one_metric = std::string(name).find("one_metric") != std::string::npos;
        CHECK(advance(f, 1) == (one_metric ? 600 : 610));
        CHECK(advance(f, 4) == (one_metric ? 600 : 620));  // past numberOfHMetrics: the last advance
        const pix2struct::Image header = pix2struct::render_header_text("ABCD DCBA", f, 24);
        CHECK(header.width > 10);
        int ink = 0;
        for (uint8_t v : header.rgb) ink += v < 128;
        CHECK(ink > 0);  // the composite glyphs C and D are drawn too
    }
    CHECK(Font::load(kFonts / "cmap12_gpos_longloca.ttf").glyph_index(U'\U0001F600') == 2);
}

TEST_CASE("hostile and broken fonts are refused with the reason, before stb_truetype reads them") {
    const std::map<std::string, std::string> expected = {
        {"reg_table_past_end.ttf", "lies past the end"},
        {"reg_cmap4_search_fields.ttf", "searchRange, entrySelector or rangeShift"},
        {"reg_composite_cycle.ttf", "contains itself"},
        {"reg_single_offcurve_contour.ttf", "single off-curve point"},
        {"reg_no_hmetrics.ttf", "numberOfHMetrics is 0"},
        {"reg_cmap_format2.ttf", "format 2"},
        {"reg_composite_overflow.ttf", "16-bit range"},
        {"reg_gpos_pairset_offset.ttf", "'GPOS' data"},
    };
    int seen = 0;
    for (const auto& e : fs::directory_iterator(kFonts)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("reg_", 0) != 0) continue;
        CAPTURE(name);
        const std::string why = refusal(e.path());
        CHECK(why.find(name) != std::string::npos);  // the message names the file
        if (name.rfind("reg_truncated_", 0) == 0) {
            CHECK(why.find("not a usable TrueType font") != std::string::npos);
        } else {
            REQUIRE(expected.count(name));
            CHECK(why.find(expected.at(name)) != std::string::npos);
        }
        ++seen;
    }
    CHECK(seen == int(expected.size()) + 4);
    // a directory or a device as --font
    CHECK(refusal(fs::temp_directory_path()).find("not a regular file") != std::string::npos);
    CHECK(refusal("/dev/zero").find("not a regular file") != std::string::npos);
}

TEST_CASE("installed TrueType fonts pass the check (it refuses no well-formed font)") {
    int checked = 0;
    for (const char* dir : {"/usr/share/fonts/truetype", "/usr/share/fonts/TTF", "/usr/local/share/fonts"}) {
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
            if (e.path().extension() != ".ttf" || e.file_size() > (64 << 20)) continue;
            CAPTURE(e.path().string());
            CHECK(refusal(e.path()).empty());
            ++checked;
        }
    }
    CHECK(checked >= 1);  // at least the default font (Liberation Sans) is installed
    CHECK(refusal(Font::default_path()).empty());
}
