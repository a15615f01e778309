// The CPU model against HF transformers 4.57.6 (Pix2StructForConditionalGeneration) on random-weight
// checkpoints: goldens written by tests/reference/make_model_goldens.py.
//
//   tests/data/models/{tiny,tiny-bf16}/          checkpoints (F32 and BF16 files of the same weights)
//   tests/data/models/goldens/<name>.{safetensors,json}
//   tests/reference/out/{large-widths-2layer,base-random}/ (generated with --big; tested when present)
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

#if __has_include("pix2struct/image/patches.hpp") && __has_include("pix2struct/image/load.hpp")
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/patches.hpp"
#define P2S_HAVE_FRONTEND 1
#endif

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {

const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";
const fs::path kOut = fs::path(PIX2STRUCT_SOURCE_DIR) / "tests" / "reference" / "out";

struct Goldens {
    SafetensorsFile file;
    nlohmann::json meta;
};

Goldens load_goldens(const fs::path& st, const fs::path& js) {
    std::ifstream in(js);
    REQUIRE_MESSAGE(in, js.string());
    return {SafetensorsFile::open(st), nlohmann::json::parse(in)};
}

std::vector<int64_t> to_i64(const TensorView& t) {
    REQUIRE(t.dtype == DType::I64);
    std::vector<int64_t> v(size_t(t.numel()));
    std::memcpy(v.data(), t.bytes.data(), v.size() * 8);
    return v;
}

// The goldens store the n real rows; the model input is padded with zero rows to max_patches.
struct Input {
    std::vector<float> flattened, mask;
    int64_t real = 0;
};
Input padded(const TensorView& real_rows, int64_t max_patches) {
    const int64_t n = real_rows.shape[0], W = real_rows.shape[1];
    Input in;
    in.real = n;
    in.flattened.assign(size_t(max_patches * W), 0.0f);
    real_rows.to_float(in.flattened.data());
    in.mask.assign(size_t(max_patches), 0.0f);
    std::fill(in.mask.begin(), in.mask.begin() + n, 1.0f);
    return in;
}

float max_abs(const float* a, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
    return m;
}
float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

std::vector<int64_t> without_start(const nlohmann::json& ids) {
    auto v = ids.get<std::vector<int64_t>>();
    REQUIRE(!v.empty());
    REQUIRE(v[0] == 0);
    return {v.begin() + 1, v.end()};
}

// Checks one checkpoint against its goldens. Returns the figures for the report.
struct Figures {
    float encoder_rel = 0, logits_abs = 0;
    int generations = 0, pipeline = 0, prompted = 0;
};

Figures check_checkpoint(const fs::path& model_dir, const Goldens& g, const Tokenizer* tok, int threads,
                         float logits_tol = 1e-3f) {
    Figures f;
    const Checkpoint ckpt = Checkpoint::load(model_dir);
    CpuBackend backend(threads);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    const int64_t P = g.meta["max_patches"].get<int64_t>();
    const int64_t H = ckpt.config().vision.hidden_size, V = ckpt.config().text.vocab_size;
    const double min_margin = g.meta["min_margin_required"].get<double>();

    for (const auto& c : g.meta["random"]) {
        const int k = c["index"].get<int>();
        CAPTURE(model_dir.string());
        CAPTURE(k);
        const Input in = padded(g.file.at("patches_" + std::to_string(k)), P);

        // encoder states (real rows)
        const int64_t n = model.encode(in.flattened, in.mask);
        REQUIRE(n == in.real);
        const std::vector<float> ref = g.file.at("encoder_" + std::to_string(k)).to_float();
        REQUIRE(int64_t(ref.size()) == n * H);
        const float scale = std::max(1.0f, max_abs(ref.data(), ref.size()));
        const float enc_diff = max_abs_diff(model.encoder_states(), ref.data(), ref.size()) / scale;
        CHECK(enc_diff <= 1e-4f);
        f.encoder_rel = std::max(f.encoder_rel, enc_diff);

        // teacher-forced logits
        const auto ids = to_i64(g.file.at("tf_ids_" + std::to_string(k)));
        const std::vector<float> logits = model.forward(in.flattened, in.mask, ids);
        const std::vector<float> ref_logits = g.file.at("logits_" + std::to_string(k)).to_float();
        REQUIRE(logits.size() == ref_logits.size());
        REQUIRE(int64_t(logits.size()) == int64_t(ids.size()) * V);
        const float lg_diff = max_abs_diff(logits.data(), ref_logits.data(), logits.size());
        CHECK(lg_diff <= logits_tol);
        f.logits_abs = std::max(f.logits_abs, lg_diff);

        // generate() with each golden configuration
        for (const auto& gen : c["generate"]) {
            if (gen["min_margin"].get<double>() < min_margin) continue;
            GenerateOptions opt;
            if (gen["kwargs"].contains("max_new_tokens")) opt.max_new_tokens = gen["kwargs"]["max_new_tokens"].get<int>();
            std::vector<int64_t> streamed;
            opt.on_token = [&](int64_t t) { streamed.push_back(t); return true; };
            const GenerateResult r = model.generate(in.flattened, in.mask, opt);
            const auto expect = without_start(gen["ids"]);
            CAPTURE(gen["kwargs"].dump());
            CHECK(r.ids == expect);
            CHECK(streamed == expect);
            CHECK(r.stopped_at_eos == (!expect.empty() && expect.back() == 1));
            if (tok && gen["text"].is_string()) CHECK(tok->decode(r.ids) == gen["text"].get<std::string>());
            ++f.generations;
        }
    }

    // pipeline cases, model half: the HF processor's patches (stored for some cases) → same ids
    for (const auto& c : g.meta["pipeline"]) {
        const int j = c["index"].get<int>();
        const TensorView* t = g.file.find("pipe_patches_" + std::to_string(j));
        if (!t) continue;
        if (c["min_margin"].get<double>() < min_margin) continue;
        CAPTURE(j);
        const Input in = padded(*t, P);
        const GenerateResult r = model.generate(in.flattened, in.mask);
        CHECK(r.ids == without_start(c["ids"]));
        if (tok && c["text"].is_string()) CHECK(tok->decode(r.ids) == c["text"].get<std::string>());
        ++f.pipeline;
    }
    // captioning with a decoder prompt (HF: processor(images, text) on a non-VQA checkpoint → generate)
    if (g.meta.contains("prompted") && tok) {
        for (const auto& c : g.meta["prompted"]) {
            if (c["min_margin"].get<double>() < min_margin) continue;
#ifdef P2S_HAVE_FRONTEND
            const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
            PreprocessOptions po;
            po.max_patches = int(P);
            const Patches p = preprocess(img, "", po);
            const auto prompt = tok->encode(c["prompt"].get<std::string>());
            CHECK(prompt == c["prompt_ids"].get<std::vector<int64_t>>());
            GenerateOptions opt;
            opt.decoder_prompt = prompt;
            const GenerateResult r = model.generate(p.flattened, p.mask, opt);
            CHECK(r.ids == without_start(c["ids"]));
            CHECK(tok->decode(r.ids) == c["text"].get<std::string>());
            ++f.prompted;
#endif
        }
    }
    return f;
}

}  // namespace

TEST_CASE("relative_position_bucket: unidirectional T5 buckets (32, max distance 128)") {
    // n = max(0, q - k): exact below 16, then 16 + trunc(log(n/16)/log(8)·16), capped at 31.
    CHECK(relative_position_bucket(0, false, 32, 128) == 0);
    CHECK(relative_position_bucket(-15, false, 32, 128) == 15);
    CHECK(relative_position_bucket(-16, false, 32, 128) == 16);
    CHECK(relative_position_bucket(-32, false, 32, 128) == 21);   // log(2)/log(8)·16 = 5.33
    CHECK(relative_position_bucket(-127, false, 32, 128) == 31);  // 15.92 → 31
    CHECK(relative_position_bucket(-1000, false, 32, 128) == 31);
    CHECK(relative_position_bucket(5, false, 32, 128) == 0);      // future keys: bucket 0 (masked anyway)
    for (int n = 16; n < 400; ++n) {  // against float64 evaluation: no integer n sits on a bucket edge
        const double exact = 16 + std::floor(std::log(n / 16.0) / std::log(8.0) * 16);
        CHECK(relative_position_bucket(-n, false, 32, 128) == int(std::min(exact, 31.0)));
    }
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

TEST_CASE("model: computing only the real patches equals the reference's masked full computation") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny.safetensors", kData / "goldens" / "tiny.json");
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    CpuBackend backend(2);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    const int64_t H = ckpt.config().vision.hidden_size;
    const Input in = padded(g.file.at("patches_0"), 64);
    const int64_t n = model.encode(in.flattened, in.mask);
    std::vector<float> trimmed(model.encoder_states(), model.encoder_states() + n * H);
    const int64_t all = model.encode(in.flattened, in.mask, EncodeOptions{.skip_padding = false});
    REQUIRE(all == 64);
    CHECK(max_abs_diff(trimmed.data(), model.encoder_states(), size_t(n * H)) <= 1e-5f);
    // and the cross-attention of the full run keeps only the real rows: same generation
    model.compute_cross_kv();
    const GenerateResult a = model.generate(in.flattened, in.mask);
    CHECK(a.encoder_rows == n);
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
TEST_CASE("model: full pipeline (image + question → preprocess → generate) gives HF's ids") {
    const Goldens g = load_goldens(kData / "goldens" / "tiny.safetensors", kData / "goldens" / "tiny.json");
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    const Tokenizer tok = Tokenizer::load(kData / "tiny");
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
    CHECK(checked >= 3);
}
#endif

TEST_CASE("model: large widths, 2 layers (BF16 file; tests/reference/out, when generated)") {
    const fs::path dir = kOut / "large-widths-2layer";
    if (!fs::exists(dir / "goldens.json")) {
        MESSAGE("skipped: run tests/reference/make_model_goldens.py --big to create ", dir.string());
        return;
    }
    const Goldens g = load_goldens(dir / "goldens.safetensors", dir / "goldens.json");
    const Tokenizer tok = Tokenizer::load(dir);
    const Figures f = check_checkpoint(dir, g, &tok, 2, 1e-3f);
    MESSAGE("large-widths 2-layer: encoder max|diff|/scale ", f.encoder_rel, ", logits max|diff| ", f.logits_abs,
            ", ", f.generations, " generations, ", f.pipeline, " pipeline cases");
    CHECK(f.generations >= 1);
}

TEST_CASE("model: base shapes (12 + 12 layers, 2048 patches; tests/reference/out, when generated)") {
    const fs::path dir = kOut / "base-random";
    if (!fs::exists(dir / "goldens.json")) {
        MESSAGE("skipped: run tests/reference/make_model_goldens.py --big to create ", dir.string());
        return;
    }
    const Goldens g = load_goldens(dir / "goldens.safetensors", dir / "goldens.json");
    const Figures f = check_checkpoint(dir, g, nullptr, 2, 1e-3f);
    MESSAGE("base random: encoder max|diff|/scale ", f.encoder_rel, ", logits max|diff| ", f.logits_abs, ", ",
            f.generations, " generations");
    CHECK(f.generations >= 1);
}
