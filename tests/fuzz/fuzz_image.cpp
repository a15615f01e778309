// Image bytes -> detail::decode_image, behind load_image_from_memory (JPEG/libjpeg-turbo, PNG/libpng, GIF/giflib, WebP/libwebp, BMP/stb).
#include "fuzz.hpp"
#include "pix2struct/image/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    pix2struct::ImageLimits limits;
    limits.max_pixels = 4'000'000;  // the decoders' allocations stay under the fuzzer's memory limit
    return fuzz::run([&] { (void)pix2struct::detail::decode_image(fuzz::bytes(data, size), "fuzz-input", limits); });
}
