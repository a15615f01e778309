// Font bytes -> the structure check (detail/sfnt_check.hpp), then everything we ask stb_truetype for:
// every glyph's outline, metrics and box, code point lookups, kerning, and a rendered header line.
// stb_truetype is compiled into this target (static, instrumented) so that the sanitizers see its reads;
// glyphs are rasterised by stb_truetype here even in FreeType builds (FreeType is fuzzed upstream).
#undef PIX2STRUCT_WITH_FREETYPE
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb_truetype.h>
#undef STB_TRUETYPE_IMPLEMENTATION  // the library's headers include it again

#include <algorithm>
#include <vector>

#include "fuzz.hpp"
#include "pix2struct/image/header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run([&] {
        const auto in = fuzz::bytes(data, size);
        const pix2struct::Font font = pix2struct::Font::from_memory({in.begin(), in.end()}, "fuzz.ttf");
        const stbtt_fontinfo* info = &font.info();
        const int glyphs = std::min(info->numGlyphs, 256);
        for (int g = 0; g < glyphs; ++g) {
            stbtt_vertex* v = nullptr;
            if (stbtt_GetGlyphShape(info, g, &v) > 0) stbtt_FreeShape(info, v);
            int a = 0, b = 0, c = 0, d = 0;
            stbtt_GetGlyphHMetrics(info, g, &a, &b);
            stbtt_GetGlyphBox(info, g, &a, &b, &c, &d);
            (void)stbtt_GetGlyphKernAdvance(info, g, (g * 7 + 1) % glyphs);
        }
        for (char32_t cp : {U'\0', U'A', U'B', U'C', U'D', U'é', U'Ω', U'\xFFFF', U'\x1F600', U'\x10FFFF'})
            (void)font.glyph_index(cp);
        (void)pix2struct::render_header_text("ABCD AB DC\nA\u00e9\U0001F600", font, 12);
    });
}
