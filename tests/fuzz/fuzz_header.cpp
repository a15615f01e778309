// Question text (any bytes) -> line breaking, layout and the rendered header with the default font.
#include "fuzz.hpp"
#include "pix2struct/image/header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const pix2struct::Font font = pix2struct::Font::load(pix2struct::Font::default_path());
    if (size > 4096) return 0;  // a header is rendered at 36 px: longer inputs only measure the rasteriser
    return fuzz::run([&] { (void)pix2struct::render_header_text(fuzz::text(data, size), font); });
}
