// tests/model_goldens.hpp — reading the model goldens of tests/reference/make_model_goldens.py and
// comparing against them; shared by tests/test_model.cpp (CPU) and tests/gpu/test_model_gpu.cu (CUDA).
// Plain C++ (compiles with g++ and nvcc), no Eigen.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "pix2struct/model/generate.hpp"
#include "pix2struct/safetensors.hpp"

namespace p2s_test {

struct Goldens {
    pix2struct::SafetensorsFile file;
    nlohmann::json meta;
};

inline Goldens load_goldens(const std::filesystem::path& st, const std::filesystem::path& js) {
    std::ifstream in(js);
    REQUIRE_MESSAGE(in, js.string());
    return {pix2struct::SafetensorsFile::open(st), nlohmann::json::parse(in)};
}

inline std::vector<int64_t> to_i64(const pix2struct::TensorView& t) {
    REQUIRE(t.dtype == pix2struct::DType::I64);
    std::vector<int64_t> v(size_t(t.numel()));
    std::memcpy(v.data(), t.bytes.data(), v.size() * 8);
    return v;
}

// The goldens store the n real rows; the model input is padded with zero rows to max_patches.
struct Input {
    std::vector<float> flattened, mask;
    int64_t real = 0;
};
inline Input padded(const pix2struct::TensorView& real_rows, int64_t max_patches) {
    const int64_t n = real_rows.shape[0], W = real_rows.shape[1];
    Input in;
    in.real = n;
    in.flattened.assign(size_t(max_patches * W), 0.0f);
    real_rows.to_float(in.flattened.data());
    in.mask.assign(size_t(max_patches), 0.0f);
    std::fill(in.mask.begin(), in.mask.begin() + n, 1.0f);
    return in;
}

inline float max_abs(const float* a, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
    return m;
}
// A non-finite output counts as an infinite difference (std::max would otherwise drop a NaN).
inline float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::isfinite(a[i]) ? std::fabs(a[i] - b[i]) : INFINITY);
    return m;
}

// n values of a backend buffer of the model's activation type, as floats on the host.
template <class Model, class S>
std::vector<float> host_floats(Model& model, const S* p, int64_t n) {
    std::vector<S> h(static_cast<size_t>(n));
    pix2struct::detail::to_host(model.backend(), h.data(), p, n);
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = float(h[i]);
    return f;
}

// The generated ids without the decoder start token (0) the goldens begin with.
inline std::vector<int64_t> without_start(const nlohmann::json& ids) {
    auto v = ids.get<std::vector<int64_t>>();
    REQUIRE(!v.empty());
    REQUIRE(v[0] == 0);
    return {v.begin() + 1, v.end()};
}

// Golden case k of the "random" list: encoder states (real rows) max |diff| ≤ encoder_tol · max(1, max |ref|)
// and teacher-forced logits max |diff| ≤ logits_tol, on any ForConditionalGeneration<Backend>. Returns both.
struct CaseDiffs {
    float encoder_rel = 0, logits_abs = 0;
};
template <class Model>
CaseDiffs check_encoder_and_logits(Model& model, const Goldens& g, int k, const Input& in, float logits_tol,
                                   float encoder_tol = 1e-4f) {
    const int64_t H = model.config().vision.hidden_size, V = model.config().text.vocab_size;
    CaseDiffs d;

    // encoder states (real rows)
    const int64_t n = model.encode(in.flattened, in.mask);
    REQUIRE(n == in.real);
    const std::vector<float> ref = g.file.at("encoder_" + std::to_string(k)).to_float();
    REQUIRE(int64_t(ref.size()) == n * H);
    const float scale = std::max(1.0f, max_abs(ref.data(), ref.size()));
    d.encoder_rel = max_abs_diff(host_floats(model, model.encoder_states(), n * H).data(), ref.data(), ref.size()) / scale;
    CHECK(d.encoder_rel <= encoder_tol);

    // teacher-forced logits
    const auto ids = to_i64(g.file.at("tf_ids_" + std::to_string(k)));
    const std::vector<float> logits = model.forward(in.flattened, in.mask, ids);
    const std::vector<float> ref_logits = g.file.at("logits_" + std::to_string(k)).to_float();
    REQUIRE(logits.size() == ref_logits.size());
    REQUIRE(int64_t(logits.size()) == int64_t(ids.size()) * V);
    d.logits_abs = max_abs_diff(logits.data(), ref_logits.data(), logits.size());
    CHECK(d.logits_abs <= logits_tol);
    return d;
}

// What check_random_cases / check_pipeline_cases (and the callers' own cases) measured, for the report.
struct Figures {
    float encoder_rel = 0, logits_abs = 0;
    int generations = 0, pipeline = 0, prompted = 0;
};

// Every case of the goldens' "random" list: check_encoder_and_logits, then generate() with each golden
// configuration whose smallest top-1 margin is clear (min_margin_required): ids and streamed tokens equal the
// golden ids, stopped_at_eos as they say; then on_generation(in, gen, opt, result) for the caller's own checks.
template <class Model, class OnGeneration>
void check_random_cases(Model& model, const Goldens& g, const std::filesystem::path& model_dir, float logits_tol,
                        Figures& f, OnGeneration&& on_generation, float encoder_tol = 1e-4f) {
    const int64_t P = g.meta["max_patches"].get<int64_t>();
    const double min_margin = g.meta["min_margin_required"].get<double>();
    for (const auto& c : g.meta["random"]) {
        const int k = c["index"].get<int>();
        CAPTURE(model_dir.string());
        CAPTURE(k);
        const Input in = padded(g.file.at("patches_" + std::to_string(k)), P);

        const CaseDiffs d = check_encoder_and_logits(model, g, k, in, logits_tol, encoder_tol);
        f.encoder_rel = std::max(f.encoder_rel, d.encoder_rel);
        f.logits_abs = std::max(f.logits_abs, d.logits_abs);

        for (const auto& gen : c["generate"]) {
            if (gen["min_margin"].get<double>() < min_margin) continue;
            pix2struct::GenerateOptions opt;
            if (gen["kwargs"].contains("max_new_tokens")) opt.max_new_tokens = gen["kwargs"]["max_new_tokens"].get<int>();
            std::vector<int64_t> streamed;
            opt.on_token = [&](int64_t t) {
                streamed.push_back(t);
                return true;
            };
            const pix2struct::GenerateResult r = model.generate(in.flattened, in.mask, opt);
            const auto expect = without_start(gen["ids"]);
            CAPTURE(gen["kwargs"].dump());
            CHECK(r.ids == expect);
            CHECK(streamed == expect);
            CHECK(r.stopped_at_eos == (!expect.empty() && expect.back() == 1));
            on_generation(in, gen, opt, r);
            ++f.generations;
        }
    }
}

// Pipeline cases, model half: the HF processor's patches (stored for some cases) give the golden ids, for the
// cases whose margin is clear; then on_case(case, result) for the caller's own checks.
template <class Model, class OnCase>
void check_pipeline_cases(Model& model, const Goldens& g, Figures& f, OnCase&& on_case) {
    const int64_t P = g.meta["max_patches"].get<int64_t>();
    const double min_margin = g.meta["min_margin_required"].get<double>();
    for (const auto& c : g.meta["pipeline"]) {
        const int j = c["index"].get<int>();
        const pix2struct::TensorView* t = g.file.find("pipe_patches_" + std::to_string(j));
        if (!t || c["min_margin"].get<double>() < min_margin) continue;
        CAPTURE(j);
        const Input in = padded(*t, P);
        const pix2struct::GenerateResult r = model.generate(in.flattened, in.mask);
        CHECK(r.ids == without_start(c["ids"]));
        on_case(c, r);
        ++f.pipeline;
    }
}

// Encoding only the real patches (the default) equals the masked full computation over all 64 rows of golden
// case 0 (padded to 64), and the cross-attention of the full run keeps only the real rows: generate() sees n.
template <class Model>
void check_skip_padding(Model& model, const Goldens& g) {
    const int64_t H = model.config().vision.hidden_size;
    const Input in = padded(g.file.at("patches_0"), 64);
    const int64_t n = model.encode(in.flattened, in.mask);
    const std::vector<float> trimmed = host_floats(model, model.encoder_states(), n * H);
    const int64_t all = model.encode(in.flattened, in.mask, pix2struct::EncodeOptions{.skip_padding = false});
    REQUIRE(all == 64);
    CHECK(max_abs_diff(trimmed.data(), host_floats(model, model.encoder_states(), n * H).data(), size_t(n * H)) <= 1e-5f);
    model.compute_cross_kv();
    const pix2struct::GenerateResult a = model.generate(in.flattened, in.mask);
    CHECK(a.encoder_rows == n);
}

// Every case of the goldens' "random" list in ONE batch, each image padded differently (P from its real rows
// to 2·max_patches: the batch has different patch counts): the packed encoder states equal each case's golden
// states; teacher-forced steps over all sequences give each case's golden logits; generate_batch() with every
// clear-margin golden configuration (the same image twice when two configurations use it, plus one request
// stopped by its callback after two tokens) gives the golden ids, and sequences leave the batch as they stop.
// Returns the number of batched generations checked.
template <class Model>
int check_batch(Model& model, const Goldens& g, float logits_tol, float encoder_tol = 1e-4f) {
    const int64_t H = model.config().vision.hidden_size, V = model.config().text.vocab_size;
    const int64_t P = g.meta["max_patches"].get<int64_t>();
    const double min_margin = g.meta["min_margin_required"].get<double>();
    std::vector<Input> inputs;
    std::vector<pix2struct::PatchInput> images;
    std::vector<int> index;
    for (const auto& c : g.meta["random"]) {
        const int k = c["index"].get<int>();
        const pix2struct::TensorView& t = g.file.at("patches_" + std::to_string(k));
        const int64_t pad = std::vector<int64_t>{t.shape[0], P, 2 * P}[inputs.size() % 3];
        inputs.push_back(padded(t, pad));
        index.push_back(k);
    }
    REQUIRE(inputs.size() >= 2);
    for (const Input& in : inputs) images.push_back({in.flattened, in.mask});

    // encoder: one pass, image i at rows segments[i] .. segments[i + 1]
    const int64_t rows = model.encode_batch(images);
    const std::vector<int64_t>& seg = model.encoder_segments();
    REQUIRE(seg.size() == inputs.size() + 1);
    REQUIRE(rows == seg.back());
    const std::vector<float> states = host_floats(model, model.encoder_states(), rows * H);
    for (size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(index[i]);
        REQUIRE(seg[i + 1] - seg[i] == inputs[i].real);
        const std::vector<float> ref = g.file.at("encoder_" + std::to_string(index[i])).to_float();
        const float scale = std::max(1.0f, max_abs(ref.data(), ref.size()));
        CHECK(max_abs_diff(states.data() + seg[i] * H, ref.data(), ref.size()) / scale <= encoder_tol);
    }

    // teacher forcing, all sequences per step, over the shortest golden id list
    std::vector<std::vector<int64_t>> tf;
    std::vector<std::vector<float>> ref_logits;
    size_t T = SIZE_MAX;
    for (int k : index) {
        tf.push_back(to_i64(g.file.at("tf_ids_" + std::to_string(k))));
        ref_logits.push_back(g.file.at("logits_" + std::to_string(k)).to_float());
        T = std::min(T, tf.back().size());
    }
    model.compute_cross_kv();
    model.begin(int64_t(T));
    for (size_t t = 0; t < T; ++t) {
        std::vector<int64_t> tokens;
        for (const auto& ids : tf) tokens.push_back(ids[t]);
        const std::vector<float> logits = host_floats(model, model.step(tokens), int64_t(inputs.size()) * V);
        for (size_t i = 0; i < inputs.size(); ++i) {
            CAPTURE(index[i]);
            CAPTURE(t);
            CHECK(max_abs_diff(logits.data() + i * size_t(V), ref_logits[i].data() + t * size_t(V), size_t(V)) <=
                  logits_tol);
        }
    }

    // generate_batch: every clear golden configuration, and one request its callback stops after 2 tokens
    std::vector<pix2struct::GenerateRequest> requests;
    std::vector<std::vector<int64_t>> expect;
    std::vector<size_t> stop_after;  // tokens after which the callback stops it (0: never)
    for (size_t i = 0; i < inputs.size(); ++i)
        for (const auto& gen : g.meta["random"][i]["generate"]) {
            if (gen["min_margin"].get<double>() < min_margin) continue;
            pix2struct::GenerateRequest r{inputs[i].flattened, inputs[i].mask, {}};
            if (gen["kwargs"].contains("max_new_tokens")) r.options.max_new_tokens = gen["kwargs"]["max_new_tokens"].get<int>();
            requests.push_back(r);
            expect.push_back(without_start(gen["ids"]));
            stop_after.push_back(0);
        }
    // the early stop: a copy of the first request that makes more than two tokens, placed second
    const auto longer = std::find_if(expect.begin(), expect.end(), [](const auto& e) { return e.size() > 2; });
    REQUIRE(longer != expect.end());
    const size_t j0 = size_t(longer - expect.begin());
    requests.insert(requests.begin() + 1, requests[j0]);
    expect.insert(expect.begin() + 1, std::vector<int64_t>{expect[j0][0], expect[j0][1]});
    stop_after.insert(stop_after.begin() + 1, 2);
    std::vector<std::vector<int64_t>> streamed(requests.size());
    for (size_t j = 0; j < requests.size(); ++j)
        requests[j].options.on_token = [&streamed, j, stop = stop_after[j]](int64_t t) {
            streamed[j].push_back(t);
            return stop == 0 || streamed[j].size() < stop;
        };
    const std::vector<pix2struct::GenerateResult> results = model.generate_batch(requests);
    REQUIRE(results.size() == requests.size());
    for (size_t j = 0; j < requests.size(); ++j) {
        CAPTURE(j);
        CHECK(results[j].ids == expect[j]);
        CHECK(streamed[j] == expect[j]);
        CHECK(results[j].stopped_at_eos == (!expect[j].empty() && expect[j].back() == 1));
    }
    return int(requests.size());
}

// A reduced-precision mode (CpuOptions::dtype Int8) against the reference's fp32 goldens, over every case
// of the "random" list: the encoder states' max |diff| / max(1, max |ref|); teacher-forced, each step's top-1
// against the reference's, max |Δlogit| relative to that step's spread of reference logits (max - min), and
// for every step whose top-1 differs, the reference's margin there (top-1 minus top-2 logit); then greedy
// generation with each golden configuration: whether the ids are the reference's, and the smallest margin
// of those configurations that differ. A difference is explained when the reference's margin there is within
// 2·max |Δlogit| (each of the two logits may move by that much): check_explained.
struct Accuracy {
    float encoder_rel = 0, logit_rel = 0, logit_abs = 0;  // logit_abs: max |Δlogit| teacher-forced
    int steps = 0, agree = 0, generations = 0, same_ids = 0;
    std::vector<float> disagree_margins;  // the reference's top-1 margin at each disagreeing step
    float min_margin_differing = INFINITY;  // the smallest golden min_margin among generations that differ
};

inline float top1_margin(const float* logits, int64_t V, int64_t* top = nullptr) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
        if (logits[i] > logits[best]) best = i;
    float second = -INFINITY;
    for (int64_t i = 0; i < V; ++i)
        if (i != best) second = std::max(second, logits[i]);
    if (top) *top = best;
    return logits[best] - second;
}

template <class Model>
Accuracy measure_accuracy(Model& model, const Goldens& g) {
    const int64_t H = model.config().vision.hidden_size, V = model.config().text.vocab_size;
    const int64_t P = g.meta["max_patches"].get<int64_t>();
    Accuracy a;
    for (const auto& c : g.meta["random"]) {
        const int k = c["index"].get<int>();
        const Input in = padded(g.file.at("patches_" + std::to_string(k)), P);
        const int64_t n = model.encode(in.flattened, in.mask);
        const std::vector<float> ref = g.file.at("encoder_" + std::to_string(k)).to_float();
        REQUIRE(int64_t(ref.size()) == n * H);
        const float scale = std::max(1.0f, max_abs(ref.data(), ref.size()));
        a.encoder_rel = std::max(a.encoder_rel,
                                 max_abs_diff(host_floats(model, model.encoder_states(), n * H).data(), ref.data(), ref.size()) / scale);

        const auto ids = to_i64(g.file.at("tf_ids_" + std::to_string(k)));
        const std::vector<float> logits = model.forward(in.flattened, in.mask, ids);
        const std::vector<float> ref_logits = g.file.at("logits_" + std::to_string(k)).to_float();
        REQUIRE(logits.size() == ref_logits.size());
        for (size_t t = 0; t < ids.size(); ++t) {
            const float* ours = logits.data() + t * size_t(V);
            const float* theirs = ref_logits.data() + t * size_t(V);
            const auto [lo, hi] = std::minmax_element(theirs, theirs + V);
            const float diff = max_abs_diff(ours, theirs, size_t(V));
            a.logit_abs = std::max(a.logit_abs, diff);
            a.logit_rel = std::max(a.logit_rel, diff / std::max(*hi - *lo, 1e-30f));
            int64_t top_ours = 0, top_ref = 0;
            top1_margin(ours, V, &top_ours);
            const float margin = top1_margin(theirs, V, &top_ref);
            ++a.steps;
            if (top_ours == top_ref) ++a.agree;
            else a.disagree_margins.push_back(margin);
        }
        for (const auto& gen : c["generate"]) {
            pix2struct::GenerateOptions opt;
            if (gen["kwargs"].contains("max_new_tokens")) opt.max_new_tokens = gen["kwargs"]["max_new_tokens"].get<int>();
            const pix2struct::GenerateResult r = model.generate(in.flattened, in.mask, opt);
            ++a.generations;
            if (r.ids == without_start(gen["ids"])) ++a.same_ids;
            else a.min_margin_differing = std::min(a.min_margin_differing, gen["min_margin"].get<float>());
        }
    }
    return a;
}

// Every top-1 difference, teacher-forced or greedy, where the reference's margin is within 2·max |Δlogit|.
inline void check_explained(const Accuracy& a) {
    for (float m : a.disagree_margins) CHECK(m <= 2 * a.logit_abs);
    if (a.same_ids < a.generations) CHECK(a.min_margin_differing <= 2 * a.logit_abs);
}

inline std::string describe(const Accuracy& a) {
    std::ostringstream s;
    s << "encoder max|diff|/scale " << a.encoder_rel << ", teacher-forced top-1 " << a.agree << "/" << a.steps
      << ", max|dlogit| " << a.logit_abs << " (/spread " << a.logit_rel << "), greedy ids identical " << a.same_ids
      << "/" << a.generations;
    if (a.same_ids < a.generations) s << " (smallest reference margin of those differing: " << a.min_margin_differing << ")";
    if (!a.disagree_margins.empty()) {
        s << ", reference margins where top-1 differs:";
        for (float m : a.disagree_margins) s << " " << m;
    }
    return s.str();
}

// Scores of answers to a rendered question (goldens/decoding.json) against the reference's. The reference drew the
// header with FreeType; the stb_truetype fallback draws glyph edges a few levels apart (test_header measures it),
// which moves a token's log-probability by up to ~1e-3 on the tiny checkpoint (measured). The ids stay the
// reference's either way.
#ifdef PIX2STRUCT_WITH_FREETYPE
inline constexpr double kTokenLogprobTol = 1e-5;  // same pixels in: float rounding only
inline constexpr double kBeamScoreRelTol = 1e-5;
#else
inline constexpr double kTokenLogprobTol = 2e-3;
inline constexpr double kBeamScoreRelTol = 5e-4;
#endif
// |Δ| allowed for the summed log-probability of `tokens` tokens.
inline double logprob_tolerance(size_t tokens) { return kTokenLogprobTol * double(tokens); }
// |Δ| allowed for a beam's length-normalised score.
inline double beam_score_tolerance(double score) { return kBeamScoreRelTol * (1 + std::abs(score)); }

}  // namespace p2s_test
