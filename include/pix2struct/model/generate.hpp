// pix2struct/model/generate.hpp — Pix2StructForConditionalGeneration: encode once, greedy-decode tokens.
//
//   ForConditionalGeneration<CpuBackend> model(checkpoint, backend);
//   GenerateResult r = model.generate(patches.flattened, patches.mask, {.max_new_tokens = 0,
//                                     .on_token = [](int64_t id) { return true; }});   // r.ids
//
// generate() matches transformers' `model.generate(flattened_patches, attention_mask)` with the default
// generation config: the sequence starts with decoder_start_token_id (0), each step appends the argmax of
// the logits (greedy, num_beams 1; ties go to the lowest id like torch.argmax), and decoding stops after
// eos (1) or after max_new_tokens new tokens when that is given. Without it, HF's length rule applies:
// the sequence may hold max_length tokens counting the start token, EXCEPT that the untouched default
// max_length of 20 means 20 NEW tokens (GenerationMixin._prepare_generated_length: "by default let's
// always generate 20 new tokens" adds the start token's length) — so 20 new tokens, not 19.
// GenerateResult::ids are the generated tokens WITHOUT the start token (HF's sequences[0][1:]), ending
// with eos when the model produced it.
//
// Buffers (activations, caches) belong to this object: allocated at the first call for the sizes seen,
// grown only when a larger input arrives, never per token. Not thread-safe: one generation at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/model/kv_cache.hpp"
#include "pix2struct/model/text_decoder.hpp"
#include "pix2struct/model/vision_encoder.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

struct GenerateOptions {
    int max_new_tokens = 0;  // 0: HF's default length rule (20 new tokens for max_length 20; see above)
    // Decoder prompt after the start token (HF: generate(decoder_input_ids=...) for conditional captioning;
    // Pix2StructProcessor tokenizes the text WITH its trailing </s>, and generation continues after it).
    std::vector<int64_t> decoder_prompt;
    // Called with each generated token (eos included) as soon as it is chosen; return false to stop early.
    std::function<bool(int64_t token)> on_token;
};

// Wall-clock milliseconds of each stage of the last generate().
struct StageTimes {
    double encoder_ms = 0, cross_kv_ms = 0;
    std::vector<double> token_ms;  // one per decode step
};

struct GenerateResult {
    std::vector<int64_t> ids;  // HF's sequences[0][1:]: the decoder prompt (if any) then the generated tokens;
                               // ends with eos if generation stopped there
    bool stopped_at_eos = false;
    int64_t encoder_rows = 0;  // patches the encoder computed (the real ones)
    StageTimes times;
};

// transformers: Pix2StructForConditionalGeneration
template <Backend B>
class ForConditionalGeneration {
public:
    using Scalar = scalar_t<B>;  // the backend's activation type: encoder states, caches, logits

    ForConditionalGeneration(const Checkpoint& checkpoint, B& backend)
        : encoder(checkpoint.config().vision, checkpoint.vision()),
          decoder(checkpoint.config().text, checkpoint.text()),
          config_(checkpoint.config()), backend_(&backend) {
        if (config_.vision.hidden_size != config_.text.hidden_size)
            detail::fail("config: vision hidden_size ", config_.vision.hidden_size, " differs from text hidden_size ",
                         config_.text.hidden_size, " (cross-attention projects the encoder states with text weights)");
    }

    const Config& config() const { return config_; }

    // Runs the vision tower: flattened [P, 2 + D], mask [P]. Returns the number of rows computed; the
    // states are encoder_states() [rows, H] for the patch indices encoder_rows().
    int64_t encode(std::span<const float> flattened, std::span<const float> mask, const EncodeOptions& options = {}) {
        const int64_t W = config_.vision.patch_embed_hidden_size + 2;
        const int64_t P = int64_t(flattened.size()) / W;
        if (states_capacity_ < P) {
            states_ = backend_->alloc(size_t(P * config_.vision.hidden_size));
            states_capacity_ = P;
        }
        rows_computed_ = encoder.forward(*backend_, flattened, mask, vision_act_, states_.data(), row_index_, options);
        return rows_computed_;
    }
    const Scalar* encoder_states() const { return states_.data(); }  // [rows, H], a backend buffer
    const std::vector<int64_t>& encoder_rows() const { return row_index_; }

    // Cross-attention K/V of every layer from the current encoder states (once per image). With
    // skip_padding = false the states include padded rows; only the real ones are used as keys.
    void compute_cross_kv() {
        const int64_t H = config_.vision.hidden_size;
        const float* m = vision_act_.mask_host.data();
        int64_t real = 0;
        for (int64_t i = 0; i < rows_computed_; ++i) real += m[i] != 0.0f;
        if (real == rows_computed_) {
            decoder.compute_cross_kv(*backend_, states_.data(), rows_computed_, cross_kv_);
            return;
        }
        // skip_padding = false: keep the real rows only (the reference masks the others to weight 0)
        typename B::Buffer compact = backend_->alloc(size_t(real * H));
        for (int64_t i = 0, j = 0; i < rows_computed_; ++i)
            if (m[i] != 0.0f) detail::within_backend(*backend_, compact.data() + H * j++, states_.data() + i * H, H);
        decoder.compute_cross_kv(*backend_, compact.data(), real, cross_kv_);
    }

    // Starts a new sequence (empties the self-attention cache) with room for `max_positions` tokens.
    void begin(int64_t max_positions) {
        self_kv_.reserve(*backend_, config_.text.num_layers, max_positions, config_.text.inner_dim());
        text_act_.reserve(*backend_, config_.text, max_positions);
        self_kv_.length = 0;
    }
    // Feeds `token` at the next position; returns the logits [V] for the following token — a backend
    // buffer (host memory for the CPU backend; a device backend may reduce it in place, e.g. argmax).
    const Scalar* step(int64_t token) { return decoder.step(*backend_, token, self_kv_, cross_kv_, text_act_); }

    // Greedy decoding that keeps the token on the backend: choose_greedy() writes the argmax of the last
    // step's logits to backend memory (chosen_token()), step_chosen() feeds it — no host work in between
    // (what a captured CUDA graph of the decode step needs). chosen_token_to_host() reads it (4 bytes).
    void choose_greedy() { decoder.choose_greedy(*backend_, text_act_); }
    const Scalar* step_chosen() { return decoder.step(*backend_, self_kv_, cross_kv_, text_act_); }
    const int32_t* chosen_token() const { return text_act_.token.data(); }
    int64_t chosen_token_to_host() {
        int32_t id = 0;
        detail::to_host(*backend_, &id, text_act_.token.data(), 1);
        return id;
    }

    // The same step with the logits copied to host memory as fp32 (generate's `.float()` of them: exact).
    const float* step_to_host(int64_t token) {
        const Scalar* logits = step(token);
        const int64_t V = config_.text.vocab_size;
        logits_host_.resize(size_t(V));
        if constexpr (std::is_same_v<Scalar, float>) {
            detail::to_host(*backend_, logits_host_.data(), logits, V);
        } else {
            logits_scalar_.resize(size_t(V));
            detail::to_host(*backend_, logits_scalar_.data(), logits, V);
            std::transform(logits_scalar_.begin(), logits_scalar_.end(), logits_host_.begin(),
                           [](Scalar x) { return float(x); });
        }
        return logits_host_.data();
    }

    // Teacher forcing: logits [T, V] for decoder_input_ids (the reference's forward with decoder_input_ids).
    std::vector<float> forward(std::span<const float> flattened, std::span<const float> mask,
                               std::span<const int64_t> decoder_input_ids) {
        encode(flattened, mask);
        compute_cross_kv();
        begin(int64_t(decoder_input_ids.size()));
        const int64_t V = config_.text.vocab_size;
        std::vector<float> logits(decoder_input_ids.size() * size_t(V));
        for (size_t t = 0; t < decoder_input_ids.size(); ++t) {
            const float* l = step_to_host(decoder_input_ids[t]);
            std::copy(l, l + V, logits.begin() + int64_t(t) * V);
        }
        return logits;
    }

    // New tokens generate() allows without max_new_tokens (see the file comment): 20 for the default
    // max_length 20, else max_length - 1.
    int64_t default_max_new_tokens() const { return config_.max_length == 20 ? 20 : config_.max_length - 1; }

    // Greedy decoding (see the file comment).
    GenerateResult generate(std::span<const float> flattened, std::span<const float> mask,
                            const GenerateOptions& options = {}) {
        using clock = std::chrono::steady_clock;
        auto ms = [](clock::time_point a, clock::time_point b) {
            return std::chrono::duration<double, std::milli>(b - a).count();
        };
        GenerateResult r;
        const int64_t max_new = options.max_new_tokens > 0 ? options.max_new_tokens : default_max_new_tokens();
        if (options.max_new_tokens < 0) detail::fail("generate: max_new_tokens must be ≥ 0, got ", options.max_new_tokens);
        auto t0 = clock::now();
        r.encoder_rows = encode(flattened, mask);
        auto t1 = clock::now();
        compute_cross_kv();
        auto t2 = clock::now();
        r.times.encoder_ms = ms(t0, t1);
        r.times.cross_kv_ms = ms(t1, t2);
        if (max_new <= 0) return r;
        const std::vector<int64_t>& prompt = options.decoder_prompt;
        begin(int64_t(prompt.size()) + max_new + 1);
        const int64_t V = config_.text.vocab_size;
        int64_t token = config_.text.decoder_start_token_id;
        // The prompt (HF feeds it in one forward; the causal mask makes that equal to one step per token).
        for (int64_t p : prompt) {
            if (p < 0 || p >= V) detail::fail("generate: decoder prompt token ", p, " is outside the vocabulary [0, ", V, ")");
            step(token);
            token = p;
            r.ids.push_back(p);
        }
        for (int64_t n = 0; n < max_new; ++n) {
            auto s0 = clock::now();
            // The first new token follows the host's token (start or prompt); later ones the previous
            // argmax, which stays in backend memory.
            if (n == 0) step(token);
            else step_chosen();
            // next_tokens = torch.argmax(next_token_scores, dim=-1): the first maximum, on the backend
            choose_greedy();
            token = chosen_token_to_host();
            r.times.token_ms.push_back(ms(s0, clock::now()));
            r.ids.push_back(token);
            const bool eos = token == config_.text.eos_token_id;
            const bool go_on = !options.on_token || options.on_token(token);
            if (eos) {
                r.stopped_at_eos = true;
                break;
            }
            if (!go_on) break;
        }
        return r;
    }

    VisionModel encoder;  // Pix2StructForConditionalGeneration.encoder
    TextModel decoder;    // Pix2StructForConditionalGeneration.decoder

private:
    Config config_;
    B* backend_;
    VisionActivations<B> vision_act_;
    TextActivations<B> text_act_;
    CrossKV<B> cross_kv_;
    SelfKV<B> self_kv_;
    typename B::Buffer states_;
    int64_t states_capacity_ = 0, rows_computed_ = 0;
    std::vector<float> logits_host_;     // [V]
    std::vector<Scalar> logits_scalar_;  // [V] staging when Scalar is not float
    std::vector<int64_t> row_index_;
};

}  // namespace pix2struct
