// pix2struct/image/font.hpp — the header font: a TrueType file for stb_truetype (and FreeType when
// PIX2STRUCT_WITH_FREETYPE is defined), and where to find the default one.
//
//   Font font = Font::load(path);          // throws pix2struct::Error (missing, unreadable, not a font)
//   Font font = Font::from_memory(bytes, name);  // the same from bytes; `name` appears in errors
//   std::filesystem::path Font::default_path();  // $PIX2STRUCT_FONT or Liberation Sans; Error if absent
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <stb_truetype.h>

// Optional: with PIX2STRUCT_WITH_FREETYPE defined (and FreeType linked) glyph extents and pixels come from
// FreeType's hinter and rasteriser, as in Pillow, instead of stb_truetype and the generated tables.
#ifdef PIX2STRUCT_WITH_FREETYPE
#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_GLYPH_H
#endif

#include "pix2struct/error.hpp"
#include "pix2struct/image/detail/liberation_sans_36.hpp"
#include "pix2struct/image/detail/sfnt_check.hpp"
#include "pix2struct/read_file.hpp"

namespace pix2struct {

// A TrueType font file in memory, ready for stb_truetype, plus what Pillow's FreeType would report.
class Font {
public:
    static Font load(const std::filesystem::path& path) {
        return from_memory(detail::read_whole_file(path, "the header font", 64 << 20), path.string());
    }

    // A font file's bytes; `name` names it in errors. The structure stb_truetype reads is checked first
    // (detail/sfnt_check.hpp): a malformed or hostile file is an Error, never an out-of-bounds read.
    static Font from_memory(std::vector<std::byte> bytes, const std::string& name) {
        Font f;
        f.path_ = name;
        if (bytes.empty()) detail::fail(name, ": the header font file is empty");
        auto data = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        f.data_ = data;
        const auto* raw = reinterpret_cast<const unsigned char*>(data->data());
        f.num_glyphs_ = int(detail::check_truetype({raw, data->size()}, name));
        const int offset = stbtt_GetFontOffsetForIndex(raw, 0);
        if (offset < 0 || !stbtt_InitFont(&f.info_, raw, offset))
            detail::fail(name, ": not a TrueType/OpenType font stb_truetype can read");
        f.units_per_em_ = ttUSHORT(raw + offset + f.info_.head + 18);
        const uint32_t checksum = ttULONG(raw + offset + f.info_.head + 8);
        f.hinted_table_ = data->size() == detail::liberation_sans_36::kFileSize &&
                          checksum == detail::liberation_sans_36::kHeadChecksumAdjustment;
#ifdef PIX2STRUCT_WITH_FREETYPE
        FT_Library lib = nullptr;
        if (FT_Init_FreeType(&lib)) detail::fail(name, ": cannot initialise FreeType");
        f.ft_library_ = std::shared_ptr<FT_LibraryRec_>(lib, FT_Done_FreeType);
        FT_Face face = nullptr;
        if (FT_New_Memory_Face(lib, raw, FT_Long(data->size()), 0, &face))
            detail::fail(name, ": FreeType cannot read the font");
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
    // The glyph for a code point; 0 (.notdef) when the font lacks it or its cmap points past the glyphs.
    int glyph_index(char32_t code_point) const {
        const int g = stbtt_FindGlyphIndex(&info_, int(code_point));
        return g > 0 && g < num_glyphs_ ? g : 0;
    }
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
    std::shared_ptr<const std::vector<std::byte>> data_;  // shared: stb and FreeType point into it
    stbtt_fontinfo info_{};
    int units_per_em_ = 0;
    int num_glyphs_ = 0;
    bool hinted_table_ = false;
#ifdef PIX2STRUCT_WITH_FREETYPE
    std::shared_ptr<FT_LibraryRec_> ft_library_;  // declared before the face: destroyed after it
    std::shared_ptr<FT_FaceRec_> ft_face_;
#endif
};

}  // namespace pix2struct
