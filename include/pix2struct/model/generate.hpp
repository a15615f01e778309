// pix2struct/model/generate.hpp — Pix2StructForConditionalGeneration: encode once, decode tokens.
//
//   ForConditionalGeneration<CpuBackend> model(checkpoint, backend);
//   GenerateResult r = model.generate(patches.flattened, patches.mask, {.max_new_tokens = 0,
//                                     .on_token = [](int64_t id) { return true; }});   // r.ids
//   std::vector<GenerateResult> rs = model.generate_batch(std::vector<GenerateRequest>{
//       {a.flattened, a.mask}, {b.flattened, b.mask, {.max_new_tokens = 8}}});              // several images
//   GenerationConfig g = checkpoint.config().generation; g.num_beams = 4;
//   GenerateResult b = model.generate(flattened, mask, {.generation = g});                // beam search
//   auto logprobs = model.score(flattened, mask, {}, candidates);                          // teacher forcing
//
// generate() matches transformers' `model.generate(flattened_patches, attention_mask)` with the checkpoint's
// generation config (Config::generation: generation_config.json, else config.json): the sequence starts with
// decoder_start_token_id (0); greedy (num_beams 1) appends the argmax of the logits at each step (ties go to
// the lowest id like torch.argmax), beam search follows GenerationMixin._beam_search (beam_search()); decoding
// stops after eos (1) or after GenerationConfig::new_tokens() new tokens — max_new_tokens when given, else
// max_length counting the start token, EXCEPT that the untouched default max_length of 20 means 20 NEW tokens
// (GenerationMixin._prepare_generated_length adds the start token's length).
// GenerateResult::ids are the generated tokens WITHOUT the start token (HF's sequences[0][1:]), ending
// with eos when the model produced it. Logits holding NaN or infinity stop generation with an Error naming
// the token (greedy: the backend's argmax reports them; beam search and score(): check_finite names the beam
// or candidate) — never an answer or a ranking made of them.
//
// Buffers (activations, caches) belong to this object: allocated at the first call for the sizes seen,
// grown only when a larger input arrives, never per token. Not thread-safe: one generation at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/memory.hpp"
#include "pix2struct/model/kv_cache.hpp"
#include "pix2struct/model/text_decoder.hpp"
#include "pix2struct/model/vision_encoder.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

struct GenerateOptions {
    int max_new_tokens = 0;  // 0: the generation config's length rule (GenerationConfig::new_tokens)
    // How to decode (num_beams, length_penalty, …, the token ids); unset: the checkpoint's (Config::generation).
    std::optional<GenerationConfig> generation{};
    // Decoder prompt after the start token (HF: generate(decoder_input_ids=...) for conditional captioning;
    // Pix2StructProcessor tokenizes the text WITH its trailing </s>, and generation continues after it).
    std::vector<int64_t> decoder_prompt{};
    // Called with each generated token (eos included) as soon as it is chosen; return false to stop early.
    std::function<bool(int64_t token)> on_token{};
    // false: decode past eos up to max_new_tokens (benchmarks: every run does the same work). Not in HF.
    bool stop_at_eos = true;
    // Record each generated token's cross-attention weights (GenerateResult::cross_attention; greedy only).
    bool cross_attention = false;
};

// One finished beam of a beam search: its tokens (without the start token) and transformers' score for it,
// the sum of its tokens' log-probabilities divided by its length to the power length_penalty.
struct Hypothesis {
    std::vector<int64_t> ids;
    float score = 0;
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
    // Beam search: the num_return_sequences best beams, best first (ids is sequences[0].ids; its score is
    // transformers' sequence_scores). Greedy: empty.
    std::vector<Hypothesis> sequences;
    CrossAttention cross_attention;  // when GenerateOptions::cross_attention asked for it
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
    int64_t images() const { return int64_t(segments_.size()) - 1; }             // images encoded

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

    // Starts new sequences (empties the self-attention caches) with room for `max_positions` tokens each:
    // sequence s reads image image[s]'s encoder rows (several sequences may share an image: beams, scored
    // candidates); without `image`, one sequence per encoded image.
    void begin(int64_t max_positions, std::span<const int64_t> image = {}) {
        std::vector<int64_t>& of = cross_kv_.image;
        if (image.empty()) {
            of.resize(size_t(images()));
            for (size_t s = 0; s < of.size(); ++s) of[s] = int64_t(s);
        } else {
            for (int64_t i : image)
                if (i < 0 || i >= images()) detail::fail("begin: image ", i, " was not encoded (", images(), " were)");
            of.assign(image.begin(), image.end());
        }
        const int64_t S = int64_t(of.size());
        self_kv_.begin(*backend_, config_.text.num_layers, S, max_positions, config_.text.inner_dim());
        text_act_.reserve(*backend_, config_.text, S, max_positions);
        all_.resize(size_t(S));
        for (int64_t s = 0; s < S; ++s) all_[size_t(s)] = s;
    }
    int64_t sequences() const { return int64_t(all_.size()); }  // sequences begun
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
    const float* step_to_host(int64_t token) { return logits_to_host(step(token), 1); }

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

    // Teacher-forced log-probabilities of several continuations of one image, all in one batch: candidate c's
    // tokens follow the start token and `prefix` (the same for all), and its result holds log p(token | what
    // precedes it) for each of its tokens — the reference's log_softmax(forward(decoder_input_ids).logits)
    // gathered at the candidate's tokens. One encoder pass and one cross K/V projection serve every candidate
    // (their sequences read the same rows); the decode steps run the candidates still feeding tokens
    // together, the longest first.
    std::vector<std::vector<double>> score(std::span<const float> flattened, std::span<const float> mask,
                                           std::span<const int64_t> prefix,
                                           std::span<const std::vector<int64_t>> candidates) {
        const int64_t V = config_.text.vocab_size, C = int64_t(candidates.size());
        std::vector<std::vector<double>> out(candidates.size());
        if (C == 0) return out;
        std::vector<int64_t> order(candidates.size()), image(candidates.size(), 0);
        size_t longest = 0;
        for (size_t c = 0; c < candidates.size(); ++c) {
            order[c] = int64_t(c);
            longest = std::max(longest, candidates[c].size());
            for (int64_t t : candidates[c])
                if (t < 0 || t >= V) detail::fail("score: candidate ", c, " has token ", t, " outside the vocabulary [0, ", V, ")");
        }
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
            return candidates[size_t(a)].size() > candidates[size_t(b)].size();
        });
        const int64_t positions = 1 + int64_t(prefix.size() + longest);
        check_memory(int64_t(mask.size()), C, positions);
        encode(flattened, mask);
        compute_cross_kv();
        begin(positions, image);
        // sequence r is candidate order[r]; at step k it feeds token k of start + prefix + candidate, and the
        // logits predict token k + 1; the sequences still feeding are a prefix 0 .. A - 1 of the sorted order
        auto token_at = [&](int64_t r, size_t k) -> int64_t {
            if (k == 0) return config_.generation.decoder_start_token_id;
            if (k <= prefix.size()) return prefix[k - 1];
            return candidates[size_t(order[size_t(r)])][k - 1 - prefix.size()];
        };
        std::vector<int64_t> slots, tokens;
        for (size_t k = 0; k + 1 < size_t(positions); ++k) {
            slots.clear();
            tokens.clear();
            for (int64_t r = 0; r < C && prefix.size() + candidates[size_t(order[size_t(r)])].size() > k; ++r) {
                slots.push_back(r);
                tokens.push_back(token_at(r, k));
            }
            const float* logits = logits_to_host(decoder.step(*backend_, slots, tokens, self_kv_, cross_kv_, text_act_),
                                                 int64_t(slots.size()));
            if (k < prefix.size()) continue;  // the prefix's own tokens are not scored
            for (int64_t r : slots) {
                const float* row = logits + r * V;
                check_finite(row, V, "score: the logits for token ", k + 1 - prefix.size(), " of candidate ", order[size_t(r)] + 1);
                out[size_t(order[size_t(r)])].push_back(log_softmax_at(row, V, token_at(r, k + 1)));
            }
        }
        return out;
    }

    // New tokens generate() allows without max_new_tokens (GenerationConfig::new_tokens).
    int64_t default_max_new_tokens() const { return config_.generation.new_tokens(); }

    // Decoding of one image (see the file comment): greedy, or beam search when the generation config
    // says num_beams > 1.
    GenerateResult generate(std::span<const float> flattened, std::span<const float> mask,
                            const GenerateOptions& options = {}) {
        const GenerateRequest request{flattened, mask, options};
        return std::move(generate_batch({&request, 1})[0]);
    }

    // Decoding of several images, each as generate() would decode it alone (the same ids). Greedy requests
    // share one encoder pass over all their real patches, then decode steps over the sequences still
    // running — a sequence leaves the batch when it stops (eos, its max_new_tokens, its on_token), and the
    // weights are read once per step for all of them. Beam-search requests run one image at a time after
    // them (beam_search). Results are in the order of the requests.
    std::vector<GenerateResult> generate_batch(std::span<const GenerateRequest> requests) {
        using clock = std::chrono::steady_clock;
        auto ms = [](clock::time_point a, clock::time_point b) {
            return std::chrono::duration<double, std::milli>(b - a).count();
        };
        std::vector<GenerateResult> results(requests.size());
        std::vector<GenerationConfig> settings;
        std::vector<size_t> greedy;  // the requests decoded greedily, in one batch
        for (size_t i = 0; i < requests.size(); ++i) {
            const GenerateOptions& o = requests[i].options;
            settings.push_back(o.generation.value_or(config_.generation));
            validate(settings.back(), "generate: the generation config", config_.text.vocab_size);
            if (o.max_new_tokens < 0) detail::fail("generate: max_new_tokens must be ≥ 0, got ", o.max_new_tokens);
            if (o.max_new_tokens > 0) settings.back().max_new_tokens = o.max_new_tokens;
            for (int64_t p : o.decoder_prompt)
                if (p < 0 || p >= config_.text.vocab_size)
                    detail::fail("generate: decoder prompt token ", p, " is outside the vocabulary [0, ", config_.text.vocab_size, ")");
            if (settings.back().num_beams == 1) greedy.push_back(i);
        }
        const size_t S = greedy.size();
        if (S > 0) {
            std::vector<int64_t> max_new(S);
            std::vector<PatchInput> images(S);
            int64_t max_positions = 1;
            bool record = false;
            for (size_t s = 0; s < S; ++s) {
                const GenerateRequest& r = requests[greedy[s]];
                max_new[s] = settings[greedy[s]].new_tokens();
                max_positions = std::max(max_positions, int64_t(r.options.decoder_prompt.size()) + max_new[s] + 1);
                images[s] = {r.flattened, r.mask};
                record = record || r.options.cross_attention;
            }
            check_memory(patch_rows(images), int64_t(S), max_positions);

            const auto t0 = clock::now();
            encode_batch(images);
            const auto t1 = clock::now();
            compute_cross_kv();
            const auto t2 = clock::now();
            for (size_t s = 0; s < S; ++s) {
                GenerateResult& res = results[greedy[s]];
                res.encoder_rows = segments_[s + 1] - segments_[s];
                res.times.encoder_ms = ms(t0, t1);
                res.times.cross_kv_ms = ms(t1, t2);
            }
            begin(max_positions);

            // Recording the cross-attention: each step's queries, per layer, against the host copy of the keys.
            std::vector<int64_t> active, still, tokens, steps(S, 0);
            std::vector<std::vector<float>> pending(S);  // [layers, patches] of the step, per sequence
            CrossQueryObserver<B> observe;
            if (record) {
                cross_keys_to_host();
                observe = [&](int layer, const Scalar* q) {
                    for (size_t r = 0; r < active.size(); ++r) {
                        const int64_t s = active[r];
                        if (!requests[greedy[size_t(s)]].options.cross_attention) continue;
                        const int64_t rows = cross_kv_.rows(s), layers = config_.text.num_layers;
                        pending[size_t(s)].resize(size_t(layers * rows));
                        add_cross_weights(q, int64_t(r), s, layer, pending[size_t(s)].data() + layer * rows);
                    }
                };
            }
            // Sequence s's k-th step feeds the start token (k = 0), its prompt (1 ≤ k ≤ prompt size), then the
            // token chosen at the step before. The host uploads the tokens when one comes from the prompt, when
            // the batch shrank (rows moved) or when it records; otherwise the chosen tokens stay on the backend.
            std::vector<int64_t> next(S);
            for (size_t s = 0; s < S; ++s) {
                next[s] = settings[greedy[s]].decoder_start_token_id;
                if (max_new[s] > 0) active.push_back(int64_t(s));
            }
            std::vector<int32_t> chosen(S);
            bool upload = true;
            while (!active.empty()) {
                const auto s0 = clock::now();
                const int64_t A = int64_t(active.size());
                // next_tokens = torch.argmax(next_token_scores, dim=-1): the first maximum, on the backend
                if (upload || record) {
                    tokens.clear();
                    for (int64_t s : active) tokens.push_back(next[size_t(s)]);
                    decoder.step(*backend_, active, tokens, self_kv_, cross_kv_, text_act_, observe);
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
                    const GenerateRequest& request = requests[greedy[s]];
                    GenerateResult& res = results[greedy[s]];
                    const std::vector<int64_t>& prompt = request.options.decoder_prompt;
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
                                     requests.size() > 1 ? " of request " + std::to_string(greedy[s]) : std::string(),
                                     " hold NaN or infinity (weights or activations are not finite)");
                    next[s] = token;
                    res.ids.push_back(token);
                    res.times.token_ms.push_back(step_ms);
                    if (request.options.cross_attention) append_cross_attention(res.cross_attention, pending[s]);
                    const bool eos = token == settings[greedy[s]].eos_token_id && request.options.stop_at_eos;
                    const bool go_on = !request.options.on_token || request.options.on_token(token);
                    res.stopped_at_eos = eos;
                    if (!eos && go_on && int64_t(res.ids.size() - prompt.size()) < max_new[s]) still.push_back(int64_t(s));
                }
                upload = upload || still.size() != active.size();
                active.swap(still);
            }
        }
        for (size_t i = 0; i < requests.size(); ++i)
            if (settings[i].num_beams > 1) results[i] = beam_search(requests[i], settings[i]);
        return results;
    }

    // Beam search over one image as transformers' generate(num_beams = g.num_beams) does it (_beam_search):
    // each step scores every beam's continuations by the beam's score plus log_softmax of its logits (fp32;
    // tokens completing a repeated n-gram get -inf), keeps the best 2·num_beams, moves those ending in eos
    // among the first num_beams to the finished set (scored sum / length^length_penalty, length counting
    // the generated tokens), and continues the best num_beams others. It stops when early_stopping says
    // (GenerationConfig::EarlyStopping) or at the length limit, where every beam counts as finished. The
    // beams are sequences reading one image's cross K/V; a step reorders their self-attention caches when
    // beams change parents.
    GenerateResult beam_search(const GenerateRequest& request, const GenerationConfig& g) {
        using clock = std::chrono::steady_clock;
        const int64_t N = g.num_beams, K = 2 * N, V = config_.text.vocab_size;
        const std::vector<int64_t>& prompt = request.options.decoder_prompt;
        const int64_t P = 1 + int64_t(prompt.size()), max_length = P + g.new_tokens();
        check_memory(int64_t(request.mask.size()), N, max_length);
        GenerateResult result;
        const auto t0 = clock::now();
        result.encoder_rows = encode(request.flattened, request.mask);
        const auto t1 = clock::now();
        compute_cross_kv();
        const auto t2 = clock::now();
        result.times.encoder_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        result.times.cross_kv_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
        const std::vector<int64_t> image(static_cast<size_t>(N), 0);
        begin(max_length, image);

        struct Beam {
            std::vector<int64_t> seq;  // start, prompt, generated tokens
            float score = 0;
            bool done = false;  // a finished slot that holds a hypothesis (the others are -1e9 fillers)
        };
        constexpr float kFiller = -1e9f;
        std::vector<Beam> running(static_cast<size_t>(N)), finished(static_cast<size_t>(N));
        for (int64_t j = 0; j < N; ++j) {
            running[size_t(j)].seq.push_back(g.decoder_start_token_id);
            running[size_t(j)].seq.insert(running[size_t(j)].seq.end(), prompt.begin(), prompt.end());
            running[size_t(j)].score = j == 0 ? 0.0f : kFiller;  // the beams start equal: only beam 0 expands
            finished[size_t(j)].score = kFiller;
        }
        // the prompt: one step per token, logits unused
        std::vector<int64_t> tokens(static_cast<size_t>(N));
        for (int64_t k = 0; k + 1 < P; ++k) {
            std::fill(tokens.begin(), tokens.end(), running[0].seq[size_t(k)]);
            decoder.step(*backend_, all_, tokens, self_kv_, cross_kv_, text_act_);
        }
        auto penalty = [&](int64_t length) { return float(std::pow(double(length), double(g.length_penalty))); };
        using Scored = std::pair<float, int64_t>;
        auto higher = [](const Scored& a, const Scored& b) { return a.first > b.first; };
        // torch.topk on the CPU: partial_sort when k·64 ≤ n, else nth_element then sort of the first k − 1
        auto top = [&](std::vector<Scored>& v, int64_t k) {
            if (k * 64 <= int64_t(v.size())) {
                std::partial_sort(v.begin(), v.begin() + k, v.end(), higher);
            } else {
                std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), higher);
                std::sort(v.begin(), v.begin() + (k - 1), higher);
            }
            v.resize(size_t(k));
        };
        std::vector<Scored> acc(static_cast<size_t>(N * V)), next_running, merged;
        std::vector<float> logprobs(static_cast<size_t>(V));
        std::vector<int64_t> parent(static_cast<size_t>(N));
        bool heuristic_unsatisfied = true;
        for (int64_t cur = P;; ++cur) {
            const auto s0 = clock::now();
            for (int64_t j = 0; j < N; ++j) tokens[size_t(j)] = running[size_t(j)].seq.back();
            const float* logits = logits_to_host(decoder.step(*backend_, all_, tokens, self_kv_, cross_kv_, text_act_), N);
            for (int64_t j = 0; j < N; ++j) {
                check_finite(logits + j * V, V, "beam search: the logits of beam ", j + 1, " for new token ", cur - P + 1);
                log_softmax(logits + j * V, V, logprobs.data());
                ban_repeated_ngrams(running[size_t(j)].seq, g.no_repeat_ngram_size, logprobs.data());
                for (int64_t v = 0; v < V; ++v)
                    acc[size_t(j * V + v)] = {logprobs[size_t(v)] + running[size_t(j)].score, j * V + v};
            }
            std::vector<Scored> candidates = acc;
            top(candidates, K);
            // candidate c: beam index / V continued by token index % V
            std::vector<bool> hit(static_cast<size_t>(K));
            next_running.clear();
            for (int64_t c = 0; c < K; ++c) {
                const int64_t token = candidates[size_t(c)].second % V;
                hit[size_t(c)] = token == g.eos_token_id || cur + 1 >= max_length;
                next_running.push_back({candidates[size_t(c)].first + (hit[size_t(c)] ? kFiller : -0.0f), c});
            }
            top(next_running, N);
            // the finished set: the best N of the old finished (indices 0 .. N-1) and the candidates among the
            // first N that hit eos or the length limit (indices N + c), scored by length
            const float denominator = penalty(cur + 1 - P);
            merged.clear();
            for (int64_t j = 0; j < N; ++j) merged.push_back({finished[size_t(j)].score, j});
            for (int64_t c = 0; c < K; ++c) {
                const bool eligible = hit[size_t(c)] && c < N;
                merged.push_back({candidates[size_t(c)].first / denominator + (eligible ? -0.0f : kFiller), N + c});
            }
            top(merged, N);
            auto extended = [&](int64_t c) {
                const int64_t index = candidates[size_t(c)].second;
                Beam b{running[size_t(index / V)].seq, 0, false};
                b.seq.push_back(index % V);
                return b;
            };
            std::vector<Beam> now_finished;
            for (const Scored& m : merged) {
                if (m.second < N) {
                    now_finished.push_back(finished[size_t(m.second)]);
                } else {
                    now_finished.push_back(extended(m.second - N));
                    now_finished.back().done = hit[size_t(m.second - N)] && m.second - N < N;
                }
                now_finished.back().score = m.first;
            }
            finished.swap(now_finished);
            std::vector<Beam> now_running;
            for (int64_t j = 0; j < N; ++j) {
                const int64_t c = next_running[size_t(j)].second;
                now_running.push_back(extended(c));
                now_running.back().score = next_running[size_t(j)].first;
                parent[size_t(j)] = candidates[size_t(c)].second / V;
            }
            running.swap(now_running);
            result.times.token_ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - s0).count());

            // stop: every candidate hit a criterion (the length limit), all N finished with early_stopping
            // true, or no running beam can still beat the worst finished one (transformers' heuristic, judged
            // at the current length, or at the longest possible one for "never" with length_penalty > 0)
            const bool never = g.early_stopping == GenerationConfig::EarlyStopping::Never && g.length_penalty > 0.0f;
            const float best = running[0].score / penalty(never ? max_length - P : cur + 1 - P);
            const bool all_done = std::all_of(finished.begin(), finished.end(), [](const Beam& b) { return b.done; });
            float worst = finished[0].score;
            for (const Beam& b : finished) worst = std::min(worst, b.score);
            bool improvable = false;
            for (const Beam& b : finished) improvable = improvable || best > (b.done ? worst : kFiller);
            heuristic_unsatisfied = heuristic_unsatisfied && improvable;
            if (!heuristic_unsatisfied || (g.early_stopping == GenerationConfig::EarlyStopping::Done && all_done) ||
                std::all_of(hit.begin(), hit.end(), [](bool h) { return h; }))
                break;
            reorder_self_kv(parent, cur);
        }
        for (int64_t i = 0; i < g.num_return_sequences; ++i) {
            const Beam& b = finished[size_t(i)];
            result.sequences.push_back({{b.seq.begin() + 1, b.seq.end()}, b.score});
        }
        result.ids = result.sequences[0].ids;
        result.stopped_at_eos = result.ids.size() > prompt.size() && result.ids.back() == g.eos_token_id;
        if (request.options.on_token)  // the best beam's tokens, once it is known
            for (size_t t = prompt.size(); t < result.ids.size(); ++t)
                if (!request.options.on_token(result.ids[t])) break;
        return result;
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
                    graph_key_.insert(graph_key_.end(), {s, cross_kv_.first_row(s), cross_kv_.rows(s)});
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

    // `rows` rows of logits [rows, V] (backend memory) as fp32 on the host (exact: generate's `.float()`).
    const float* logits_to_host(const Scalar* logits, int64_t rows) {
        const int64_t n = rows * config_.text.vocab_size;
        logits_host_.resize(size_t(n));
        if constexpr (std::is_same_v<Scalar, float>) {
            detail::to_host(*backend_, logits_host_.data(), logits, n);
        } else {
            logits_scalar_.resize(size_t(n));
            detail::to_host(*backend_, logits_scalar_.data(), logits, n);
            std::transform(logits_scalar_.begin(), logits_scalar_.end(), logits_host_.begin(),
                           [](Scalar x) { return float(x); });
        }
        return logits_host_.data();
    }

    // Logits holding NaN or infinity are an Error (the greedy rule, kNonFiniteLogits): never a ranking of them.
    template <class... Where>
    static void check_finite(const float* x, int64_t n, const Where&... where) {
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(x[i])) detail::fail(where..., " hold NaN or infinity (weights or activations are not finite)");
    }
    // torch.log_softmax of a row in fp32, in its order: (x − max) − log Σ exp(x − max).
    static void log_softmax(const float* x, int64_t n, float* out) {
        const float top = *std::max_element(x, x + n);
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i] - top));
        const float lse = float(std::log(sum));
        for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - top) - lse;
    }
    // log_softmax(x)[t] in double.
    static double log_softmax_at(const float* x, int64_t n, int64_t t) {
        const double top = *std::max_element(x, x + n);
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - top);
        return double(x[t]) - top - std::log(sum);
    }

    // transformers' NoRepeatNGramLogitsProcessor on one beam: the tokens that would complete an n-gram
    // already in `seq` (start token included) get -inf.
    static void ban_repeated_ngrams(const std::vector<int64_t>& seq, int n, float* logprobs) {
        const size_t len = seq.size();
        if (n <= 0 || len + 1 < size_t(n)) return;
        const size_t key = len + 1 - size_t(n);  // the last n − 1 tokens start here
        for (size_t i = 0; i + size_t(n) <= len; ++i)
            if (std::equal(seq.begin() + int64_t(i), seq.begin() + int64_t(i) + n - 1, seq.begin() + int64_t(key)))
                logprobs[seq[i + size_t(n) - 1]] = -std::numeric_limits<float>::infinity();
    }

    // Beam j continues beam parent[j]: its self-attention caches (positions 0 .. length − 1) become a copy
    // of that beam's.
    void reorder_self_kv(std::span<const int64_t> parent, int64_t length) {
        const int64_t N = int64_t(parent.size()), I = config_.text.inner_dim();
        bool same = true;
        for (int64_t j = 0; j < N; ++j) same = same && parent[size_t(j)] == j;
        if (same) return;
        if (int64_t(reorder_capacity_) < N * I) {
            reorder_ = backend_->alloc(size_t(N * I));
            reorder_capacity_ = size_t(N * I);
        }
        for (auto* caches : {&self_kv_.keys, &self_kv_.values})
            for (auto& cache : *caches)
                for (int64_t p = 0; p < length; ++p) {
                    Scalar* block = cache.data() + p * self_kv_.sequences * I;  // the beams' rows at position p
                    detail::within_backend(*backend_, reorder_.data(), block, N * I);
                    for (int64_t j = 0; j < N; ++j)
                        if (parent[size_t(j)] != j)
                            detail::within_backend(*backend_, block + j * I, reorder_.data() + parent[size_t(j)] * I, I);
                }
    }

    // Every layer's cross keys as fp32 on the host, for recording attention weights.
    void cross_keys_to_host() {
        const int64_t N = cross_kv_.end_row(), I = config_.text.inner_dim();
        cross_keys_host_.resize(cross_kv_.keys.size());
        for (size_t l = 0; l < cross_kv_.keys.size(); ++l) {
            cross_keys_host_[l].resize(size_t(N * I));
            detail::cross_to_host(*backend_, cross_keys_host_[l].data(), cross_kv_.keys[l].data(), N, I);
        }
    }

    // out[j] = the mean over heads of softmax_j(q_h · K_h[j]) over sequence s's encoder rows, for row r of the
    // step's cross-attention queries q [A, I] (backend memory) at `layer`.
    void add_cross_weights(const Scalar* q, int64_t r, int64_t s, int layer, float* out) {
        const int64_t I = config_.text.inner_dim(), D = config_.text.d_kv, H = config_.text.num_heads;
        std::vector<Scalar> staged(static_cast<size_t>(I));
        detail::to_host(*backend_, staged.data(), q + r * I, I);
        const int64_t o = cross_kv_.first_row(s), T = cross_kv_.rows(s);
        const float* K = cross_keys_host_[size_t(layer)].data() + o * I;
        std::vector<double> score(static_cast<size_t>(T));
        std::fill(out, out + T, 0.0f);
        for (int64_t h = 0; h < H; ++h) {
            double top = -std::numeric_limits<double>::infinity(), sum = 0;
            for (int64_t j = 0; j < T; ++j) {
                double d = 0;
                for (int64_t k = 0; k < D; ++k) d += double(float(staged[size_t(h * D + k)])) * K[j * I + h * D + k];
                score[size_t(j)] = d;
                top = std::max(top, d);
            }
            for (double& x : score) sum += (x = std::exp(x - top));
            for (int64_t j = 0; j < T; ++j) out[j] += float(score[size_t(j)] / sum / double(H));
        }
    }

    // Appends a token's weights [layers, patches] (from add_cross_weights) to `into`.
    void append_cross_attention(CrossAttention& into, const std::vector<float>& token) const {
        into.layers = config_.text.num_layers;
        into.patches = int64_t(token.size()) / into.layers;
        into.weights.insert(into.weights.end(), token.begin(), token.end());
        ++into.tokens;
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
    std::vector<float> logits_host_;     // [rows, V]
    std::vector<Scalar> logits_scalar_;  // [rows, V] staging when Scalar is not float
    std::vector<std::vector<float>> cross_keys_host_;  // [layers][N, I] (cross_keys_to_host)
    typename B::Buffer reorder_;         // [beams, I]: reorder_self_kv's staging
    size_t reorder_capacity_ = 0;
    std::vector<int64_t> row_index_, segments_;
    std::vector<int64_t> all_;           // 0 .. sequences - 1: the rows of step() and step_chosen()
    std::vector<int64_t> graph_key_;
};

}  // namespace pix2struct
