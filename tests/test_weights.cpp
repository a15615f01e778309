// Weight binding: every tensor of a checkpoint bound by name with its shape checked; all problems
// reported at once by full name; F32 files used in place, BF16 converted.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "pix2struct/random_checkpoint.hpp"
#include "pix2struct/weights.hpp"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
fs::path temp_dir(const std::string& name) {
    fs::path dir = fs::temp_directory_path() / "pix2struct-tests" / name;
    fs::remove_all(dir);
    return dir;
}
}  // namespace

TEST_CASE("a random tiny checkpoint binds every tensor, F32 zero-copy and BF16 converted") {
    const Config config = Config::tiny();
    const fs::path f32 = temp_dir("tiny-f32"), bf16 = temp_dir("tiny-bf16");
    write_random_checkpoint(f32, config, {.max_patches = 64, .is_vqa = true}, DType::F32, 7);
    write_random_checkpoint(bf16, config, {.max_patches = 64, .is_vqa = true}, DType::BF16, 7);

    const Checkpoint a = Checkpoint::load(f32);
    const Checkpoint b = Checkpoint::load(bf16);
    CHECK(a.preprocessor().max_patches == 64);
    CHECK(a.preprocessor().is_vqa);
    CHECK(a.config().to_json() == config.to_json());
    // 4 embedding tensors + 9 per vision layer + final norm; 4 + 14 per text layer.
    CHECK(a.file().tensors().size() == size_t(4 + 9 * 2 + 1 + 4 + 14 * 2));
    const Weight& wq = a.vision().layers[1].attention.query;
    CHECK(wq.name == "encoder.encoder.layer.1.attention.query.weight");
    CHECK(wq.shape == std::vector<int64_t>{64, 64});
    CHECK(wq.source->dtype == DType::F32);
    CHECK(static_cast<const void*>(wq.data) == static_cast<const void*>(wq.source->bytes.data()));  // zero-copy
    const Weight& wq16 = b.vision().layers[1].attention.query;
    CHECK(wq16.source->dtype == DType::BF16);
    for (int64_t i = 0; i < wq.size(); ++i)
        REQUIRE(wq16.data[i] == bf16_to_float(float_to_bf16(wq.data[i])));  // same seed, rounded
    CHECK(a.text().relative_attention_bias.shape == std::vector<int64_t>{32, 4});
    CHECK(a.text().lm_head.shape == std::vector<int64_t>{512, 64});
    CHECK(a.text().layers.size() == 2);
    CHECK(a.vision().layernorm.data[0] == 1.0f);

    int visited = 0;
    a.for_each([&](const Weight& w) {
        CHECK(w.index == visited++);
        CHECK(a.file().find(w.name) == w.source);
    });
    CHECK(size_t(visited) == a.file().tensors().size());

    // Decode-step matrices of a BF16 checkpoint get their stored bytes beside them (Weight::bf16); nothing
    // else does, and an F32 checkpoint has none.
    const TextLayerWeights& l16 = b.text().layers[1];
    for (const Weight* w : {&l16.self_attention.query, &l16.cross_attention.output, &l16.mlp.wo, &b.text().lm_head}) {
        REQUIRE(w->bf16 != nullptr);
        CHECK(std::memcmp(w->bf16, w->source->bytes.data(), w->source->bytes.size()) == 0);
    }
    for (const Weight* w : {&l16.cross_attention.key, &l16.cross_attention.value, &b.text().embed_tokens,
                            &b.text().final_layer_norm, &wq16})
        CHECK(w->bf16 == nullptr);
    CHECK(a.text().lm_head.bf16 == nullptr);
    CHECK(Checkpoint::load(bf16, {.decode_copies = false}).text().lm_head.bf16 == nullptr);

    const Checkpoint raw = Checkpoint::load(bf16, {.float_views = false});
    CHECK(raw.text().lm_head.data == nullptr);
    CHECK(raw.text().lm_head.source != nullptr);
    CHECK(raw.text().lm_head.bf16 == nullptr);
}

TEST_CASE("binding lists every missing, mis-shaped and unexpected tensor by name") {
    const Config config = Config::tiny();
    const fs::path dir = temp_dir("broken");
    write_random_checkpoint(dir, config, {}, DType::F32, 1);
    const SafetensorsFile good = SafetensorsFile::open(dir / "model.safetensors");
    SafetensorsWriter w;
    for (const TensorView& t : good.tensors()) {
        if (t.name == "decoder.lm_head.weight" || t.name == "encoder.encoder.layer.0.mlp.wo.weight") continue;
        if (t.name == "decoder.final_layer_norm.weight") {
            const std::vector<float> v(65, 1.0f);
            w.add_f32(t.name, {65}, v);
            continue;
        }
        if (t.name == "encoder.layernorm.weight") {
            const std::vector<int32_t> v(64, 1);
            w.add(t.name, DType::I32, {64}, std::as_bytes(std::span(v)));
            continue;
        }
        w.add(t.name, t.dtype, t.shape, t.bytes);
    }
    const std::vector<float> extra(3, 0.0f);
    w.add_f32("decoder.layer.5.mlp.extra.weight", {3}, extra);
    w.write(dir / "model.safetensors");

    std::string msg;
    try {
        Checkpoint::load(dir);
    } catch (const Error& e) {
        msg = e.what();
    }
    CAPTURE(msg);
    CHECK(msg.find("5 problems") != std::string::npos);
    CHECK(msg.find("missing tensor 'decoder.lm_head.weight' [512, 64]") != std::string::npos);
    CHECK(msg.find("missing tensor 'encoder.encoder.layer.0.mlp.wo.weight' [64, 128]") != std::string::npos);
    CHECK(msg.find("tensor 'decoder.final_layer_norm.weight' has shape [65], the config implies [64]") != std::string::npos);
    CHECK(msg.find("tensor 'encoder.layernorm.weight' is I32") != std::string::npos);
    CHECK(msg.find("unexpected tensor 'decoder.layer.5.mlp.extra.weight'") != std::string::npos);
}

TEST_CASE("a missing or incomplete model folder is named") {
    CHECK_THROWS_WITH_AS(Checkpoint::load("/nonexistent/model"), doctest::Contains("model folder not found"), Error);
    const fs::path dir = temp_dir("incomplete");
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << "{}";
    CHECK_THROWS_WITH_AS(Checkpoint::load(dir), doctest::Contains("preprocessor_config.json is missing"), Error);
}
