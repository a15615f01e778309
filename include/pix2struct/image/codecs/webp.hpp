// pix2struct/image/codecs/webp.hpp — WebP through libwebp, as Pillow decodes it.
//
// Pillow 13 (WebPImagePlugin.py, _webp.c) opens every WebP, still or animated, lossy or lossless, with
// libwebp's WebPAnimDecoder (default options: RGBA output, fancy upsampling) and shows the first frame
// composed on the canvas; mode RGBA when the file has alpha, else RGB (the X byte dropped). convert("RGB")
// drops the alpha. We call the same decoder the same way. The canvas size is read from the header and
// checked before the decoder allocates it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include <webp/decode.h>
#include <webp/demux.h>

#include "pix2struct/image/image.hpp"

namespace pix2struct::detail::webp {

struct Delete {
    void operator()(WebPAnimDecoder* d) const { WebPAnimDecoderDelete(d); }
};

inline Image decode(std::span<const std::byte> bytes, std::string_view name, const ImageLimits& limits) {
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    WebPBitstreamFeatures features;
    if (WebPGetFeatures(data, bytes.size(), &features) != VP8_STATUS_OK) fail(name, ": not a readable WebP file");
    check_image_size(name, "WebP", features.width, features.height, limits);

    WebPAnimDecoderOptions options;
    if (!WebPAnimDecoderOptionsInit(&options)) fail(name, ": libwebp's version does not match its headers");
    options.color_mode = MODE_RGBA;
    options.use_threads = 0;
    const WebPData webp{data, bytes.size()};
    std::unique_ptr<WebPAnimDecoder, Delete> decoder(WebPAnimDecoderNew(&webp, &options));
    if (!decoder) fail(name, ": not a readable WebP file (its chunks are malformed)");
    WebPAnimInfo info;
    if (!WebPAnimDecoderGetInfo(decoder.get(), &info)) fail(name, ": not a readable WebP file");
    if (int64_t(info.canvas_width) != features.width || int64_t(info.canvas_height) != features.height)
        fail(name, ": the WebP canvas (", info.canvas_width, "x", info.canvas_height, ") differs from its header's size");
    uint8_t* rgba = nullptr;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp) || !rgba)
        fail(name, ": cannot decode the WebP image (corrupt or truncated data)");

    Image out;
    out.width = int(info.canvas_width);
    out.height = int(info.canvas_height);
    const size_t n = size_t(out.width) * out.height;
    out.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i)
        for (int c = 0; c < 3; ++c) out.rgb[3 * i + c] = rgba[4 * i + c];
    return out;
}

}  // namespace pix2struct::detail::webp
