// The CPU model against HF transformers 4.57.6 (Pix2StructForConditionalGeneration) on random-weight
// checkpoints: goldens written by tests/reference/make_model_goldens.py.
//
//   tests/data/models/{tiny,tiny-bf16}/          checkpoints (F32 and BF16 files of the same weights)
//   tests/data/models/wide/                      BF16, d_kv 64, 24 vision heads, d_ff 3968, > 1024 patches
//   tests/data/models/goldens/<name>.{safetensors,json}
//   tests/reference/out/{large-widths-2layer,base-random}/ (generated with --big): test_model_big.cpp
//
// Tolerances: encoder states max |diff| ≤ 1e-4 · max(1, max |ref|); teacher-forced logits ≤ 1e-3 absolute
// (scaled the same way for the large checkpoints, whose states are larger); generated ids identical for
// cases whose smallest top-1 margin (recorded by the script) is clear; decoded text identical.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/nn/relative_position.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/tokenizer.hpp"
#include "pix2struct/weights.hpp"

#include "model_checks.hpp"  // P2S_HAVE_FRONTEND when the front end's headers are there

namespace fs = std::filesystem;
using namespace pix2struct;
using namespace p2s_test;

namespace {

const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";
const fs::path kOut = fs::path(PIX2STRUCT_SOURCE_DIR) / "tests" / "reference" / "out";

}  // namespace

TEST_CASE("relative_position_bucket equals the reference's for 8 settings, both directions, |position| <= 4096") {
    std::ifstream in(fs::path(PIX2STRUCT_TEST_DATA) / "position_buckets.json");
    REQUIRE(in);
    const auto golden = nlohmann::json::parse(in);
    int settings = 0;
    for (const auto& c : golden["cases"]) {
        const int buckets = c["num_buckets"], max_distance = c["max_distance"];
        const bool bidirectional = c["bidirectional"];
        CAPTURE(buckets);
        CAPTURE(max_distance);
        CAPTURE(bidirectional);
        const auto& runs = c["runs"];
        int mismatches = 0;
        for (size_t r = 0; r < runs.size(); ++r) {
            const int64_t from = runs[r][0], to = r + 1 < runs.size() ? runs[r + 1][0].get<int64_t>() - 1 : c["last"].get<int64_t>();
            for (int64_t rp = from; rp <= to; ++rp)
                mismatches += relative_position_bucket(rp, bidirectional, buckets, max_distance) != runs[r][1].get<int>();
        }
        CHECK(mismatches == 0);
        ++settings;
    }
    CHECK(settings == 16);
}

TEST_CASE("model: tiny F32 checkpoint matches HF (encoder, teacher-forced logits, generate, text)") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny.safetensors", kData / "goldens" / "tiny.json");
    const Tokenizer tok = Tokenizer::load(kData / "tiny");
    for (int threads : {1, 2}) {
        const Figures f = check_checkpoint(kData / "tiny", g, &tok, threads);
        MESSAGE("tiny F32, threads ", threads, ": encoder max|diff|/scale ", f.encoder_rel, ", logits max|diff| ",
                f.logits_abs, ", ", f.generations, " generations, ", f.pipeline, " pipeline cases, ", f.prompted,
                " prompted captions");
        CHECK(f.generations >= 4);
        CHECK(f.pipeline >= 1);
    }
}

TEST_CASE("model: tiny BF16 checkpoint matches HF run on the same BF16 weights") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny-bf16.safetensors", kData / "goldens" / "tiny-bf16.json");
    const Tokenizer tok = Tokenizer::load(kData / "tiny-bf16");
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny-bf16");
    CHECK(ckpt.text().lm_head.source->dtype == DType::BF16);
    const Figures f = check_checkpoint(kData / "tiny-bf16", g, &tok, 2);
    MESSAGE("tiny BF16: encoder max|diff|/scale ", f.encoder_rel, ", logits max|diff| ", f.logits_abs, ", ",
            f.generations, " generations");
    CHECK(f.generations >= 4);
}

TEST_CASE("model: wide checkpoint (24 heads of d_kv 64, d_ff 3968, 1122 patches) matches HF") {
    const Goldens g = load_goldens(kData / "goldens" / "wide.safetensors", kData / "goldens" / "wide.json");
    const Tokenizer tok = Tokenizer::load(kData / "wide");
    const Checkpoint ckpt = Checkpoint::load(kData / "wide");
    CHECK(ckpt.config().vision.d_kv == 64);
    CHECK(ckpt.config().text.d_kv == 64);
    CHECK(ckpt.config().vision.num_attention_heads * ckpt.config().vision.d_kv == 1536);
    const Figures f = check_checkpoint(kData / "wide", g, &tok, 2);
    MESSAGE("wide BF16: encoder max|diff|/scale ", f.encoder_rel, ", logits max|diff| ", f.logits_abs, ", ",
            f.generations, " generations");
    CHECK(f.generations >= 2);  // its pipeline cases run through the front end below
}

TEST_CASE("model: computing only the real patches equals the reference's masked full computation") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny.safetensors", kData / "goldens" / "tiny.json");
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    CpuBackend backend(2);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    check_skip_padding(model, g);
}

TEST_CASE("model: a batch of images with different patch counts gives each one's HF results") {
    for (const std::string name : {"tiny", "tiny-bf16"}) {
        CAPTURE(name);
        const Goldens g = load_goldens(kData / "goldens" / (name + ".safetensors"),
                                       kData / "goldens" / (name + ".json"));
        const Checkpoint ckpt = Checkpoint::load(kData / name);
        CpuBackend backend(2);
        ForConditionalGeneration<CpuBackend> model(ckpt, backend);
        const int n = check_batch(model, g, 1e-3f);
        MESSAGE(name, ": ", n, " generations in one batch");
        CHECK(n >= 5);
    }
}

TEST_CASE("model: stop_at_eos = false decodes past eos (benchmarks), the ids up to eos unchanged") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny.safetensors", kData / "goldens" / "tiny.json");
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    CpuBackend backend(1);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    int checked = 0;
    for (const auto& c : g.meta["random"])
        for (const auto& gen : c["generate"]) {
            const std::vector<int64_t> want = without_start(gen["ids"]);
            if (gen["kwargs"].contains("max_new_tokens") || want.empty() || want.back() != 1) continue;  // ends at eos
            const Input in = padded(g.file.at("patches_" + std::to_string(c["index"].get<int>())),
                                    g.meta["max_patches"].get<int64_t>());
            const int n = int(want.size()) + 5;
            const GenerateResult r = model.generate(in.flattened, in.mask, {.max_new_tokens = n, .stop_at_eos = false});
            REQUIRE(r.ids.size() == size_t(n));
            CHECK(std::vector<int64_t>(r.ids.begin(), r.ids.begin() + int64_t(want.size())) == want);
            CHECK_FALSE(r.stopped_at_eos);
            ++checked;
        }
    CHECK(checked >= 1);
}

TEST_CASE("model: bad inputs are errors naming the problem") {
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    CpuBackend backend(1);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    std::vector<float> flat(64 * 770, 0.0f), mask(64, 0.0f);
    CHECK_THROWS_WITH_AS(model.encode(flat, mask), doctest::Contains("no real patch"), Error);
    std::vector<float> odd(100, 0.0f);
    CHECK_THROWS_WITH_AS(model.encode(odd, mask), doctest::Contains("patch width"), Error);
    mask[0] = 1;
    flat[0] = 5000;  // row id outside the 128-row table
    CHECK_THROWS_WITH_AS(model.encode(flat, mask), doctest::Contains("outside the embedding tables"), Error);
}

#ifdef P2S_HAVE_FRONTEND
// Image + question → our preprocess → generate, against HF's processor + generate: ids and text.
static int check_full_pipeline(const std::string& name) {
    const Goldens g = load_goldens(kData / "goldens" / (name + ".safetensors"), kData / "goldens" / (name + ".json"));
    const Checkpoint ckpt = Checkpoint::load(kData / name);
    const Tokenizer tok = Tokenizer::load(kData / name);
    CpuBackend backend(2);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    int checked = 0;
    for (const auto& c : g.meta["pipeline"]) {
        if (c["min_margin"].get<double>() < g.meta["min_margin_required"].get<double>()) continue;
        CAPTURE(c["image"].get<std::string>());
        CAPTURE(c["question"].get<std::string>());
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        PreprocessOptions po;
        po.max_patches = g.meta["max_patches"].get<int>();
        po.is_vqa = c["is_vqa"].get<bool>();
        po.font_path = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf";
        const Patches p = preprocess(img, c["question"].get<std::string>(), po);
        CHECK(p.num_real() == c["num_real"].get<int>());
        const GenerateResult r = model.generate(p.flattened, p.mask);
        CHECK(r.ids == without_start(c["ids"]));
        CHECK(tok.decode(r.ids) == c["text"].get<std::string>());
        ++checked;
    }
    return checked;
}

TEST_CASE("model: full pipeline (image + question → preprocess → generate) gives HF's ids") {
    CHECK(check_full_pipeline("tiny") >= 3);
    CHECK(check_full_pipeline("wide") >= 3);  // > 1024 patches from real images
}
#endif

// Int8 mode (CpuOptions::dtype) against the reference's fp32 goldens, for the default choice of int8 layers
// and the two alternatives bench/RESULTS.md compares (lm_head in int8 too; the MLPs' wo kept fp32).
TEST_CASE("model: int8 mode against HF fp32 (tiny, tiny-bf16, wide): encoder error, teacher-forced top-1, greedy ids") {
    struct Choice {
        const char* label;
        Int8Layers layers;
    };
    const Choice choices[] = {{"default: all but lm_head", {}},
                              {"lm_head int8 too", {.lm_head = true}},
                              {"wo fp32", {.mlp_out = false}}};
    for (const std::string name : {"tiny", "tiny-bf16", "wide"}) {
        CAPTURE(name);
        fs::path st = kData / "goldens" / name, js = st;
        const Goldens g = load_goldens(st += ".safetensors", js += ".json");
        const Checkpoint ckpt = Checkpoint::load(kData / name);
        for (const Choice& c : choices) {
            CpuInt8Backend backend(ckpt, CpuOptions{.threads = 2, .int8 = c.layers});
            REQUIRE(backend.int8_bytes() > 0);
            ForConditionalGeneration<CpuInt8Backend> model(ckpt, backend);
            const Accuracy a = measure_accuracy(model, g);
            MESSAGE(name, " int8 (", std::string(c.label), "): ", describe(a));
            CHECK(a.steps > 0);
            if (&c != &choices[0]) continue;
            check_explained(a);
            CHECK(a.agree == a.steps);
            CHECK(a.encoder_rel <= 0.03f);
            CHECK(a.logit_rel <= 0.03f);
        }
    }
}

// The bf16 mode (CpuBf16Backend) against HF run in bfloat16 (tests/reference/make_bf16_goldens.py), with the
// GPU bf16 path's tolerances (gpu/test_model_gpu.cu): every matmul, norm and residual output is rounded to
// bf16, so states and logits compare at bf16's scale — encoder ≤ 2e-2 · max(1, max |ref|), logits ≤ 1.0 — and
// ids where every top-1 margin is ≥ 1.0. The F32 file `tiny` gives the results of `tiny-bf16`: the backend
// rounds its weights as torch_dtype=bfloat16 does. Against HF fp32 (tiny, tiny-bf16, wide): every top-1
// difference, teacher-forced or greedy, where the reference's margin is within 2 · max |Δlogit|.
TEST_CASE("model: bf16 mode (CpuBf16Backend) gives HF bfloat16's results; against HF fp32, differences only at small margins") {
    const fs::path golden = kData / "goldens" / "tiny-bf16-act";
    const Goldens g = load_goldens(fs::path(golden) += ".safetensors", fs::path(golden) += ".json");
    REQUIRE(g.meta["activations"] == "bfloat16");
    for (const std::string name : {"tiny-bf16", "tiny"}) {
        CAPTURE(name);
        const Checkpoint ckpt = Checkpoint::load(kData / name);
        CpuBf16Backend backend(ckpt, CpuOptions{.threads = 2});
        ForConditionalGeneration<CpuBf16Backend> model(ckpt, backend);
        Figures f;
        check_random_cases(model, g, kData / name, 1.0f, f, [](const Input&, const nlohmann::json&, const GenerateOptions&,
                                                               const GenerateResult&) {}, 2e-2f);
        check_pipeline_cases(model, g, f, [](const nlohmann::json&, const GenerateResult&) {});
        CHECK(check_batch(model, g, 1.0f, 2e-2f) >= 2);
        MESSAGE(name, " bf16 against HF bfloat16: encoder max|diff|/scale ", f.encoder_rel,
                ", logits max|diff| ", f.logits_abs, ", ", f.generations, " generations, ", f.pipeline, " pipeline cases");
        CHECK(f.generations >= 4);
        CHECK(f.pipeline >= 1);
    }
    for (const std::string name : {"tiny", "tiny-bf16", "wide"}) {
        CAPTURE(name);
        const fs::path st = kData / "goldens" / name;
        const Goldens fp32 = load_goldens(fs::path(st) += ".safetensors", fs::path(st) += ".json");
        const Checkpoint ckpt = Checkpoint::load(kData / name);
        CpuBf16Backend backend(ckpt, CpuOptions{.threads = 2});
        ForConditionalGeneration<CpuBf16Backend> model(ckpt, backend);
        const Accuracy a = measure_accuracy(model, fp32);
        MESSAGE(name, " bf16 against HF fp32: ", describe(a));
        CHECK(a.steps > 0);
        check_explained(a);
    }
}
