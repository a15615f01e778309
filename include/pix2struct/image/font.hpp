// pix2struct/image/font.hpp — the header font: a TrueType file for stb_truetype (and FreeType when
// PIX2STRUCT_WITH_FREETYPE is defined), and where to find the default one.
//
//   Font font = Font::load(path);          // throws pix2struct::Error (missing, unreadable, not a font)
//   std::filesystem::path Font::default_path();  // $PIX2STRUCT_FONT or Liberation Sans; Error if absent
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
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
#include "pix2struct/image/load.hpp"

namespace pix2struct {

// A TrueType font file in memory, ready for stb_truetype, plus what Pillow's FreeType would report.
class Font {
public:
    static Font load(const std::filesystem::path& path) {
        Font f;
        f.path_ = path;
        auto data = std::make_shared<const std::vector<std::byte>>(detail::read_whole_file(path, "the header font", 64 << 20));
        if (data->empty()) detail::fail(path.string(), ": the header font file is empty");
        f.data_ = data;
        const auto* bytes = reinterpret_cast<const unsigned char*>(data->data());
        const int offset = stbtt_GetFontOffsetForIndex(bytes, 0);
        if (offset < 0 || !stbtt_InitFont(&f.info_, bytes, offset))
            detail::fail(path.string(), ": not a TrueType/OpenType font stb_truetype can read");
        f.units_per_em_ = ttUSHORT(bytes + offset + f.info_.head + 18);
        if (f.units_per_em_ <= 0) detail::fail(path.string(), ": the font's unitsPerEm is 0");
        const uint32_t checksum = ttULONG(bytes + offset + f.info_.head + 8);
        f.hinted_table_ = data->size() == detail::liberation_sans_36::kFileSize &&
                          checksum == detail::liberation_sans_36::kHeadChecksumAdjustment;
#ifdef PIX2STRUCT_WITH_FREETYPE
        FT_Library lib = nullptr;
        if (FT_Init_FreeType(&lib)) detail::fail(path.string(), ": cannot initialise FreeType");
        f.ft_library_ = std::shared_ptr<FT_LibraryRec_>(lib, FT_Done_FreeType);
        FT_Face face = nullptr;
        if (FT_New_Memory_Face(lib, bytes, FT_Long(data->size()), 0, &face))
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
    std::shared_ptr<const std::vector<std::byte>> data_;  // shared: stb and FreeType point into it
    stbtt_fontinfo info_{};
    int units_per_em_ = 0;
    bool hinted_table_ = false;
#ifdef PIX2STRUCT_WITH_FREETYPE
    std::shared_ptr<FT_LibraryRec_> ft_library_;  // declared before the face: destroyed after it
    std::shared_ptr<FT_FaceRec_> ft_face_;
#endif
};

}  // namespace pix2struct
