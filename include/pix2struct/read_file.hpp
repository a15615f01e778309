// pix2struct/read_file.hpp — a whole regular file into memory, bounded, with errors naming it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>
#include <system_error>
#include <vector>

#include "pix2struct/error.hpp"

namespace pix2struct::detail {

// The bytes of `path`, at most `max_bytes`; `what` names it in the errors ("the image file"). A missing
// file, a directory or a device is an Error, not an attempt to read it.
inline std::vector<std::byte> read_whole_file(const std::filesystem::path& path, std::string_view what,
                                              int64_t max_bytes = std::numeric_limits<int64_t>::max()) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) fail(path.string(), ": cannot open ", what, " (no such file)");
    if (!std::filesystem::is_regular_file(status)) fail(path.string(), ": cannot read ", what, " (not a regular file)");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(path.string(), ": cannot open ", what);
    const std::streamoff size = in.tellg();
    if (size < 0) fail(path.string(), ": cannot read ", what);
    if (size > max_bytes) fail(path.string(), ": ", what, " is ", size, " bytes, more than the limit of ", max_bytes);
    std::vector<std::byte> data(static_cast<size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) fail(path.string(), ": cannot read ", what);
    return data;
}

}  // namespace pix2struct::detail
