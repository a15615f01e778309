// tests/fuzz/fuzz.hpp — shared by the fuzz targets: each defines LLVMFuzzerTestOneInput and feeds the
// bytes to one parser; a pix2struct::Error is the expected outcome of bad input, anything else (a crash,
// a sanitizer report, another exception, a hang, memory past -rss_limit_mb) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "pix2struct/error.hpp"

namespace fuzz {

inline std::span<const std::byte> bytes(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const std::byte*>(data), size};
}
inline std::string_view text(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// Runs f; a pix2struct::Error is a clean refusal.
template <class F>
int run(F&& f) {
    try {
        f();
    } catch (const pix2struct::Error&) {
    }
    return 0;
}

}  // namespace fuzz
