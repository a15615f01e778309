// pix2struct/image/codecs/gif.hpp — the first frame of a GIF through giflib, as Pillow's Image.open gives it.
//
// What Pillow 13 (GifImagePlugin.py) does for frame 0, followed here:
//   * the canvas is the logical screen, enlarged to hold the frame if the frame reaches past it;
//   * the frame's palette is its local colour table if it has one, else the global one; a table that is
//     the identity grey ramp (entry i = (i, i, i)) counts as no palette, and then the image is mode L:
//     a pixel's value is its index;
//   * the canvas outside the frame holds the transparent index of the frame's graphic control extension if
//     it has one, else 0; inside the frame every pixel keeps its index (transparency is not applied);
//   * convert("RGB") looks each index up in the palette.
// A frame whose data ends early is an error here (giflib stops there; Pillow would leave the rest of the
// canvas as it was).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <gif_lib.h>

#include "pix2struct/image/image.hpp"

namespace pix2struct::detail::gif {

struct Reader {
    const uint8_t* data;
    size_t size, at;
};

inline int on_read(GifFileType* g, GifByteType* out, int n) {
    auto* r = static_cast<Reader*>(g->UserData);
    const size_t k = std::min(size_t(n < 0 ? 0 : n), r->size - r->at);
    std::memcpy(out, r->data + r->at, k);
    r->at += k;
    return int(k);
}

struct Close {
    void operator()(GifFileType* g) const {
        int error = 0;
        DGifCloseFile(g, &error);
    }
};

// The palette as Pillow keeps it: none (mode L) when absent or the identity grey ramp.
inline const ColorMapObject* pillow_palette(const ColorMapObject* map) {
    if (!map) return nullptr;
    for (int i = 0; i < map->ColorCount; ++i) {
        const GifColorType& c = map->Colors[i];
        if (!(c.Red == i && c.Green == i && c.Blue == i)) return map;
    }
    return nullptr;
}

inline Image decode(std::span<const std::byte> bytes, std::string_view name, const ImageLimits& limits) {
    Reader reader{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 0};
    int error = 0;
    std::unique_ptr<GifFileType, Close> g(DGifOpen(&reader, on_read, &error));
    auto why = [&](int code) { const char* s = GifErrorString(code); return s ? s : "unknown error"; };
    if (!g) fail(name, ": not a readable GIF (", why(error), ")");

    int transparency = -1;
    for (;;) {
        GifRecordType type = UNDEFINED_RECORD_TYPE;
        if (DGifGetRecordType(g.get(), &type) == GIF_ERROR) fail(name, ": cannot read the GIF (", why(g->Error), ")");
        if (type == TERMINATE_RECORD_TYPE) fail(name, ": the GIF has no image");
        if (type == EXTENSION_RECORD_TYPE) {
            int code = 0;
            GifByteType* block = nullptr;
            if (DGifGetExtension(g.get(), &code, &block) == GIF_ERROR) fail(name, ": cannot read the GIF (", why(g->Error), ")");
            // Graphic control extension: block[0] is the length, then flags, delay (2 bytes), transparent index.
            if (code == GRAPHICS_EXT_FUNC_CODE && block && block[0] >= 4 && (block[1] & 1)) transparency = block[4];
            while (block)
                if (DGifGetExtensionNext(g.get(), &block) == GIF_ERROR) fail(name, ": cannot read the GIF (", why(g->Error), ")");
            continue;
        }
        if (type != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(g.get()) == GIF_ERROR) fail(name, ": cannot read the GIF (", why(g->Error), ")");
        break;
    }

    const GifImageDesc& d = g->Image;
    const int64_t x0 = d.Left, y0 = d.Top, fw = d.Width, fh = d.Height;
    const int64_t width = std::max<int64_t>(g->SWidth, x0 + fw), height = std::max<int64_t>(g->SHeight, y0 + fh);
    check_image_size(name, "GIF", width, height, limits);
    if (fw <= 0 || fh <= 0) fail(name, ": the GIF's first frame has no pixels (", fw, "x", fh, ")");
    const ColorMapObject* palette = pillow_palette(d.ColorMap ? d.ColorMap : g->SColorMap);

    std::vector<uint8_t> index(size_t(width * height), uint8_t(transparency >= 0 ? transparency : 0));
    std::vector<GifPixelType> line(static_cast<size_t>(fw));
    auto read_row = [&](int64_t y) {
        if (DGifGetLine(g.get(), line.data(), int(fw)) == GIF_ERROR)
            fail(name, ": cannot decode the GIF's first frame (", why(g->Error), ")");
        std::copy(line.begin(), line.end(), index.begin() + (y0 + y) * width + x0);
    };
    if (d.Interlace) {  // rows stored in four passes: every 8th from 0, every 8th from 4, every 4th from 2, odd rows
        static constexpr int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        for (int pass = 0; pass < 4; ++pass)
            for (int64_t y = start[pass]; y < fh; y += step[pass]) read_row(y);
    } else {
        for (int64_t y = 0; y < fh; ++y) read_row(y);
    }

    Image out;
    out.width = int(width);
    out.height = int(height);
    out.rgb.resize(index.size() * 3);
    for (size_t i = 0; i < index.size(); ++i) {
        const int v = index[i];
        uint8_t* o = &out.rgb[3 * i];
        if (!palette) {
            o[0] = o[1] = o[2] = uint8_t(v);
        } else if (v < palette->ColorCount) {
            o[0] = palette->Colors[v].Red, o[1] = palette->Colors[v].Green, o[2] = palette->Colors[v].Blue;
        } else {
            o[0] = o[1] = o[2] = 0;  // past the table: Pillow's palette holds zeros there
        }
    }
    return out;
}

}  // namespace pix2struct::detail::gif
