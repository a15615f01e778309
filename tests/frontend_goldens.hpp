// tests/frontend_goldens.hpp — access to the front-end goldens written by
// tests/reference/make_frontend_goldens.py (frontend.json metadata + frontend.safetensors arrays).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2struct/image/load.hpp"
#include "pix2struct/safetensors.hpp"

namespace goldens {

inline std::filesystem::path data_dir() { return std::filesystem::path(PIX2STRUCT_TEST_DATA); }
inline std::filesystem::path image_path(const std::string& name) { return data_dir() / "images" / name; }
inline std::filesystem::path golden_path(const std::string& name) { return data_dir() / "goldens" / name; }

struct Frontend {
    nlohmann::json meta;
    pix2struct::SafetensorsFile arrays;

    static const Frontend& get() {
        static const Frontend f{
            nlohmann::json::parse(std::ifstream(golden_path("frontend.json"))),
            pix2struct::SafetensorsFile::open(golden_path("frontend.safetensors"))};
        return f;
    }

    // A U8 [h, w, 3] array as an Image.
    pix2struct::Image image(const std::string& key) const {
        const pix2struct::TensorView& t = arrays.at(key);
        REQUIRE(t.dtype == pix2struct::DType::U8);
        REQUIRE(t.shape.size() == 3);
        REQUIRE(t.shape[2] == 3);
        pix2struct::Image im;
        im.height = int(t.shape[0]);
        im.width = int(t.shape[1]);
        im.rgb.resize(t.bytes.size());
        std::memcpy(im.rgb.data(), t.bytes.data(), t.bytes.size());
        return im;
    }

    std::vector<float> floats(const std::string& key) const { return arrays.at(key).to_float(); }
};

// Largest absolute difference between two equally sized byte images (-1 when sizes differ).
inline int max_abs_diff(const pix2struct::Image& a, const pix2struct::Image& b) {
    if (a.width != b.width || a.height != b.height) return -1;
    int m = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i) m = std::max(m, std::abs(int(a.rgb[i]) - int(b.rgb[i])));
    return m;
}

inline double mean_abs_diff(const pix2struct::Image& a, const pix2struct::Image& b) {
    double s = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i) s += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
    return a.rgb.empty() ? 0.0 : s / double(a.rgb.size());
}

}  // namespace goldens
