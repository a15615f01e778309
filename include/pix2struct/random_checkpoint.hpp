// pix2struct/random_checkpoint.hpp — writes a random-weight checkpoint in Hugging Face layout.
//
//   pix2struct::write_random_checkpoint("out/base", pix2struct::Config::base(), {.is_vqa = true},
//                                       pix2struct::DType::BF16, /*seed=*/1);
//
// The folder gets config.json, preprocessor_config.json and model.safetensors with every tensor the
// config implies (the same list Checkpoint binds), so benchmarks run at the real shapes without a
// download. Values: norms 1, linear weights uniform with variance 1/fan_in, embeddings unit variance.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pix2struct/config.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

inline void write_random_checkpoint(const std::filesystem::path& dir, const Config& config,
                                    const PreprocessorConfig& preprocessor, DType storage, uint64_t seed = 0) {
    if (storage != DType::F32 && storage != DType::BF16)
        detail::fail("random checkpoint: storage dtype ", dtype_name(storage), " is not supported (F32 or BF16)");
    config.validate("random checkpoint config");
    std::filesystem::create_directories(dir);

    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    auto next_uniform = [&state]() {  // splitmix64 → [-1, 1)
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return float(double(z >> 11) * 0x1p-52 - 1.0);
    };

    SafetensorsWriter writer;
    VisionWeights vision;
    TextWeights text;
    std::vector<float> values;
    for_each_weight(config, vision, text, [&](Weight&, const std::string& name, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        values.resize(size_t(n));
        const bool is_norm = name.ends_with("layer_norm.weight") || name.ends_with("layernorm.weight");
        const bool is_embedding = name.ends_with("embedder.weight") || name.ends_with("embed_tokens.weight") ||
                                  name.ends_with("relative_attention_bias.weight") || shape.size() == 1;
        // uniform on [-a, a] has variance a²/3
        const float a = is_embedding ? std::sqrt(3.0f) : std::sqrt(3.0f / float(shape.back()));
        for (float& v : values) v = is_norm ? 1.0f : a * next_uniform();
        if (storage == DType::F32)
            writer.add_f32(name, shape, values);
        else
            writer.add_bf16(name, shape, values);
    });
    writer.set_metadata("format", "pt");
    writer.write(dir / "model.safetensors");

    auto write_json = [](const std::filesystem::path& path, const nlohmann::json& j) {
        std::ofstream out(path);
        out << j.dump(2) << "\n";
        if (!out) detail::fail(path.string(), ": write failed");
    };
    nlohmann::json cj = config.to_json();
    cj["torch_dtype"] = storage == DType::F32 ? "float32" : "bfloat16";
    write_json(dir / "config.json", cj);
    write_json(dir / "preprocessor_config.json", preprocessor.to_json());
}

}  // namespace pix2struct
