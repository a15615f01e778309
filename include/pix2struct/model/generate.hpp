// pix2struct/model/generate.hpp — Pix2StructForConditionalGeneration: encode once, greedy-decode tokens.
//
//   ForConditionalGeneration<CpuBackend> model(checkpoint, backend);
//   GenerateResult r = model.generate(patches.flattened, patches.mask, {.max_new_tokens = 0,
//                                     .on_token = [](int64_t id) { return true; }});   // r.ids
//   std::vector<GenerateResult> rs = model.generate_batch(std::vector<GenerateRequest>{
//       {a.flattened, a.mask}, {b.flattened, b.mask, {.max_new_tokens = 8}}});              // several images
//
// generate() matches transformers' `model.generate(flattened_patches, attention_mask)` with the default
// generation config: the sequence starts with decoder_start_token_id (0), each step appends the argmax of
// the logits (greedy, num_beams 1; ties go to the lowest id like torch.argmax), and decoding stops after
// eos (1) or after max_new_tokens new tokens when that is given. Without it, HF's length rule applies:
// the sequence may hold max_length tokens counting the start token, EXCEPT that the untouched default
// max_length of 20 means 20 NEW tokens (GenerationMixin._prepare_generated_length: "by default let's
// always generate 20 new tokens" adds the start token's length) — so 20 new tokens, not 19.
// GenerateResult::ids are the generated tokens WITHOUT the start token (HF's sequences[0][1:]), ending
// with eos when the model produced it. Logits holding NaN or infinity stop generation with an Error
// naming the token (never an answer made of whatever argmax makes of them).
//
// Buffers (activations, caches) belong to this object: allocated at the first call for the sizes seen,
// grown only when a larger input arrives, never per token. Not thread-safe: one generation at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

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
    std::vector<int64_t> decoder_prompt{};
    // Called with each generated token (eos included) as soon as it is chosen; return false to stop early.
    std::function<bool(int64_t token)> on_token{};
    // false: decode past eos up to max_new_tokens (benchmarks: every run does the same work). Not in HF.
    bool stop_at_eos = true;
};

// Wall-clock milliseconds of each stage of the last generate(). In a batch the encoder and cross K/V
// times are the whole batch's, and token_ms has the batch's steps this sequence took part in.
struct StageTimes {
    double encoder_ms = 0, cross_kv_ms = 0;
    std::vector<double> token_ms;  // one per generated token
};

struct GenerateResult {
    std::vector<int64_t> ids;  // HF's sequences[0][1:]: the decoder prompt (if any) then the generated tokens;
                               // ends with eos if generation stopped there
    bool stopped_at_eos = false;
    int64_t encoder_rows = 0;  // patches the encoder computed for this image (the real ones)
    StageTimes times;
};

// One input of generate_batch(): an image's patches and how to decode it.
struct GenerateRequest {
    std::span<const float> flattened, mask;  // [P, 2 + D] and [P]; P may differ between requests
    GenerateOptions options;
};

// Upper bound of what generate_batch() allocates for activations and caches, in bytes, for `rows` encoder
// rows (all images' patches), `sequences` sequences of up to `positions` tokens and `elem`-byte activations:
// the encoder's per-row buffers and states, every decoder layer's cross K/V of the rows and self K/V of the
// sequences, and one decode step's activations and logits.
inline int64_t generation_bytes(const Config& c, int64_t rows, int64_t sequences, int64_t positions, int64_t elem) {
    const VisionConfig& v = c.vision;
    const TextConfig& t = c.text;
    const int64_t encoder = rows * (v.patch_embed_hidden_size + 4 * int64_t(v.hidden_size) + 4 * v.inner_dim() +
                                    2 * int64_t(v.d_ff));
    const int64_t cross = 2 * int64_t(t.num_layers) * rows * t.inner_dim();
    const int64_t self = 2 * int64_t(t.num_layers) * sequences * positions * t.inner_dim();
    const int64_t step = sequences * (2 * int64_t(t.hidden_size) + 4 * t.inner_dim() + 2 * int64_t(t.d_ff) + t.vocab_size);
    return (encoder + cross + self + step) * elem + int64_t(t.num_heads) * positions * int64_t(sizeof(float));
}

// The default memory budget: the machine's physical memory (0 when the system does not say).
inline int64_t physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? int64_t(pages) * page : 0;
}

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
    B& backend() { return *backend_; }

    // The most bytes of activations and caches one generate_batch() may allocate (generation_bytes);
    // a call needing more is an Error before any allocation. 0: physical_memory_bytes().
    void set_memory_budget(int64_t bytes) { memory_budget_ = bytes > 0 ? bytes : physical_memory_bytes(); }
    int64_t memory_budget() const { return memory_budget_; }
    // Refuses `rows` encoder rows and `sequences` sequences of `positions` tokens over the budget.
    void check_memory(int64_t rows, int64_t sequences, int64_t positions) const {
        const int64_t need = generation_bytes(config_, rows, sequences, positions, int64_t(sizeof(Scalar)));
        if (memory_budget_ > 0 && need > memory_budget_)
            detail::fail("generate: ", rows, " patches and ", sequences, " sequence(s) of up to ", positions,
                         " tokens need ", need >> 20, " MiB of activations and caches, more than the memory budget of ",
                         memory_budget_ >> 20, " MiB (PipelineOptions::max_memory_bytes, --max-memory-mb)");
    }

    // Runs the vision tower on one image: flattened [P, 2 + D], mask [P]. Returns the number of rows
    // computed; the states are encoder_states() [rows, H] for the patch indices encoder_rows().
    int64_t encode(std::span<const float> flattened, std::span<const float> mask, const EncodeOptions& options = {}) {
        const PatchInput image{flattened, mask};
        return encode_batch({&image, 1}, options);
    }
    // The same for several images in one pass (a batch; their patch counts may differ and no work is done
    // on padding): image i's states are rows encoder_segments()[i] .. encoder_segments()[i + 1] of
    // encoder_states(). The decoder then runs one sequence per image.
    int64_t encode_batch(std::span<const PatchInput> images, const EncodeOptions& options = {}) {
        const int64_t P = patch_rows(images);
        if (states_capacity_ < P) {
            states_ = backend_->alloc(size_t(P * config_.vision.hidden_size));
            states_capacity_ = P;
        }
        rows_computed_ = encoder.forward(*backend_, images, vision_act_, states_.data(), row_index_, segments_, options);
        return rows_computed_;
    }
    const Scalar* encoder_states() const { return states_.data(); }  // [rows, H], a backend buffer
    const std::vector<int64_t>& encoder_rows() const { return row_index_; }    // each row's patch in its image
    const std::vector<int64_t>& encoder_segments() const { return segments_; }  // [images + 1]
    int64_t sequences() const { return int64_t(segments_.size()) - 1; }          // images encoded

    // Cross-attention K/V of every layer from the current encoder states (once per batch). With
    // skip_padding = false the states include padded rows; only the real ones are used as keys.
    void compute_cross_kv() {
        const int64_t H = config_.vision.hidden_size;
        const float* m = vision_act_.mask_host.data();
        std::vector<int64_t> offsets{0};
        for (size_t i = 0; i + 1 < segments_.size(); ++i)
            offsets.push_back(offsets.back() + std::count_if(m + segments_[i], m + segments_[i + 1],
                                                             [](float x) { return x != 0.0f; }));
        if (offsets.back() == rows_computed_) {
            decoder.compute_cross_kv(*backend_, states_.data(), offsets, cross_kv_);
            return;
        }
        // skip_padding = false: keep the real rows only (the reference masks the others to weight 0)
        typename B::Buffer compact = backend_->alloc(size_t(offsets.back() * H));
        for (int64_t i = 0, j = 0; i < rows_computed_; ++i)
            if (m[i] != 0.0f) detail::within_backend(*backend_, compact.data() + H * j++, states_.data() + i * H, H);
        decoder.compute_cross_kv(*backend_, compact.data(), offsets, cross_kv_);
    }

    // Starts new sequences, one per encoded image (empties the self-attention caches), with room for
    // `max_positions` tokens each.
    void begin(int64_t max_positions) {
        const int64_t S = sequences();
        self_kv_.begin(*backend_, config_.text.num_layers, S, max_positions, config_.text.inner_dim());
        text_act_.reserve(*backend_, config_.text, S, max_positions);
        all_.resize(size_t(S));
        for (int64_t s = 0; s < S; ++s) all_[size_t(s)] = s;
    }
    // Feeds one token per sequence at its next position; returns the logits [sequences, V] — a backend
    // buffer (host memory for the CPU backend; a device backend may reduce it in place, e.g. argmax).
    const Scalar* step(std::span<const int64_t> tokens) {
        return decoder.step(*backend_, all_, tokens, self_kv_, cross_kv_, text_act_);
    }
    const Scalar* step(int64_t token) { return step({&token, 1}); }  // one sequence

    // Greedy decoding that keeps the tokens on the backend: choose_greedy() writes the argmax of each row
    // of the last step's logits to backend memory (chosen_token()), step_chosen() feeds them — no host
    // work in between (what a captured CUDA graph of the decode step needs). chosen_token_to_host() reads
    // the first sequence's (4 bytes).
    void choose_greedy() { decoder.choose_greedy(*backend_, sequences(), text_act_); }
    const Scalar* step_chosen() { return decoder.step(*backend_, all_, self_kv_, cross_kv_, text_act_); }
    // step_chosen() then choose_greedy(): on a backend that records launch sequences (CudaBackend with
    // CudaOptions::graphs) recorded once per position and batch as a CUDA graph, then replayed.
    void greedy_step() { greedy_step(all_); }
    const int32_t* chosen_token() const { return text_act_.token.data(); }
    int64_t chosen_token_to_host() {
        int32_t id = 0;
        detail::to_host(*backend_, &id, text_act_.token.data(), 1);
        return id;
    }

    // One sequence's step with the logits copied to host memory as fp32 (generate's `.float()` of them: exact).
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

    // Greedy decoding of one image (see the file comment).
    GenerateResult generate(std::span<const float> flattened, std::span<const float> mask,
                            const GenerateOptions& options = {}) {
        const GenerateRequest request{flattened, mask, options};
        return std::move(generate_batch({&request, 1})[0]);
    }

    // Greedy decoding of several images at once, each as generate() would decode it alone (the same ids):
    // one encoder pass over all their real patches, then decode steps over the sequences still running — a
    // sequence leaves the batch when it stops (eos, its max_new_tokens, its on_token), and the weights are
    // read once per step for all of them. Results are in the order of the requests.
    std::vector<GenerateResult> generate_batch(std::span<const GenerateRequest> requests) {
        using clock = std::chrono::steady_clock;
        auto ms = [](clock::time_point a, clock::time_point b) {
            return std::chrono::duration<double, std::milli>(b - a).count();
        };
        const size_t S = requests.size();
        std::vector<GenerateResult> results(S);
        if (S == 0) return results;
        const int64_t V = config_.text.vocab_size;
        std::vector<int64_t> max_new(S);
        std::vector<PatchInput> images(S);
        int64_t max_positions = 1;
        for (size_t s = 0; s < S; ++s) {
            const GenerateOptions& o = requests[s].options;
            if (o.max_new_tokens < 0) detail::fail("generate: max_new_tokens must be ≥ 0, got ", o.max_new_tokens);
            for (int64_t p : o.decoder_prompt)
                if (p < 0 || p >= V)
                    detail::fail("generate: decoder prompt token ", p, " is outside the vocabulary [0, ", V, ")");
            max_new[s] = o.max_new_tokens > 0 ? o.max_new_tokens : default_max_new_tokens();
            max_positions = std::max(max_positions, int64_t(o.decoder_prompt.size()) + max_new[s] + 1);
            images[s] = {requests[s].flattened, requests[s].mask};
        }
        check_memory(patch_rows(images), int64_t(S), max_positions);

        const auto t0 = clock::now();
        encode_batch(images);
        const auto t1 = clock::now();
        compute_cross_kv();
        const auto t2 = clock::now();
        for (size_t s = 0; s < S; ++s) {
            results[s].encoder_rows = segments_[s + 1] - segments_[s];
            results[s].times.encoder_ms = ms(t0, t1);
            results[s].times.cross_kv_ms = ms(t1, t2);
        }

        begin(max_positions);
        // Sequence s's k-th step feeds the start token (k = 0), its prompt (1 ≤ k ≤ prompt size), then the
        // token chosen at the step before. The host uploads the tokens when one comes from the prompt or
        // when the batch shrank (rows moved); otherwise the chosen tokens stay on the backend.
        std::vector<int64_t> active, still, tokens, steps(S, 0), next(S, config_.text.decoder_start_token_id);
        for (size_t s = 0; s < S; ++s)
            if (max_new[s] > 0) active.push_back(int64_t(s));
        std::vector<int32_t> chosen(S);
        bool upload = true;
        while (!active.empty()) {
            const auto s0 = clock::now();
            const int64_t A = int64_t(active.size());
            // next_tokens = torch.argmax(next_token_scores, dim=-1): the first maximum, on the backend
            if (upload) {
                tokens.clear();
                for (int64_t s : active) tokens.push_back(next[size_t(s)]);
                decoder.step(*backend_, active, tokens, self_kv_, cross_kv_, text_act_);
                decoder.choose_greedy(*backend_, A, text_act_);
            } else {
                greedy_step(active);
            }
            detail::to_host(*backend_, chosen.data(), text_act_.token.data(), A);
            const double step_ms = ms(s0, clock::now());
            upload = false;
            still.clear();
            for (int64_t r = 0; r < A; ++r) {
                const size_t s = size_t(active[size_t(r)]);
                GenerateResult& res = results[s];
                const std::vector<int64_t>& prompt = requests[s].options.decoder_prompt;
                const size_t k = size_t(steps[s]++);
                if (k < prompt.size()) {  // HF feeds the prompt in one forward; the causal mask makes that equal
                    next[s] = prompt[k];
                    res.ids.push_back(prompt[k]);
                    upload = true;
                    still.push_back(int64_t(s));
                    continue;
                }
                const int64_t token = chosen[size_t(r)];
                if (token == kNonFiniteLogits)
                    detail::fail("generate: the logits of new token ", res.ids.size() - prompt.size() + 1,
                                 requests.size() > 1 ? " of request " + std::to_string(s) : std::string(),
                                 " hold NaN or infinity (weights or activations are not finite)");
                next[s] = token;
                res.ids.push_back(token);
                res.times.token_ms.push_back(step_ms);
                const bool eos = token == config_.text.eos_token_id && requests[s].options.stop_at_eos;
                const bool go_on = !requests[s].options.on_token || requests[s].options.on_token(token);
                res.stopped_at_eos = eos;
                if (!eos && go_on && int64_t(res.ids.size() - prompt.size()) < max_new[s]) still.push_back(int64_t(s));
            }
            upload = upload || still.size() != active.size();
            active.swap(still);
        }
        return results;
    }

    VisionModel encoder;  // Pix2StructForConditionalGeneration.encoder
    TextModel decoder;    // Pix2StructForConditionalGeneration.decoder

private:
    // A decode step of `slots` fed the tokens on the backend, then their argmax — recorded and replayed
    // when the backend can (B::graph), keyed by everything its launches depend on: the buffers, the
    // sequences' rows and encoder rows, the position.
    void greedy_step(std::span<const int64_t> slots) {
        auto run = [&] {
            decoder.step(*backend_, slots, self_kv_, cross_kv_, text_act_);
            decoder.choose_greedy(*backend_, int64_t(slots.size()), text_act_);
        };
        if constexpr (requires(const std::vector<int64_t>& key) { backend_->graph(key, run); }) {
            if (!slots.empty()) {
                graph_key_.assign({self_kv_.id, self_kv_.sequences, cross_kv_.id, text_act_.id,
                                   self_kv_.length[size_t(slots[0])]});
                for (int64_t s : slots)
                    graph_key_.insert(graph_key_.end(), {s, cross_kv_.offsets[size_t(s)], cross_kv_.offsets[size_t(s) + 1]});
                const std::vector<int64_t> length = self_kv_.length;  // B::graph may run its function twice
                const bool ran = backend_->graph(graph_key_, [&] {
                    self_kv_.length = length;
                    run();
                });
                if (!ran) decoder.advance(slots, self_kv_);  // a replayed step: its host side
                return;
            }
        }
        run();
    }

    // Rows of all the images' flattened patches [P, 2 + D] (padding included).
    int64_t patch_rows(std::span<const PatchInput> images) const {
        int64_t rows = 0;
        for (const PatchInput& image : images)
            rows += int64_t(image.flattened.size()) / (config_.vision.patch_embed_hidden_size + 2);
        return rows;
    }

    Config config_;
    B* backend_;
    int64_t memory_budget_ = physical_memory_bytes();
    VisionActivations<B> vision_act_;
    TextActivations<B> text_act_;
    CrossKV<B> cross_kv_;
    SelfKV<B> self_kv_;
    typename B::Buffer states_;
    int64_t states_capacity_ = 0, rows_computed_ = 0;
    std::vector<float> logits_host_;     // [V]
    std::vector<Scalar> logits_scalar_;  // [V] staging when Scalar is not float
    std::vector<int64_t> row_index_, segments_;
    std::vector<int64_t> all_;           // 0 .. sequences - 1: the rows of step() and step_chosen()
    std::vector<int64_t> graph_key_;
};

}  // namespace pix2struct
