// pix2struct/model/continuous.hpp — continuous batching: greedy sequences join and leave a running batch
// between decode steps.
//
//   ContinuousBatch<CpuBackend> batch(model, {.sequences = 16, .positions = 21, .rows = 16 * 2048});
//   std::vector<int64_t> ids = batch.admit(images, options);   // one encoder pass for the newcomers
//   while (batch.running() > 0)
//       for (const ContinuousToken& t : batch.step())   // every running sequence, one token
//           ...  // t.sequence, t.token, t.done (the sequence has left: eos, its length, or its on_token)
//
// A server admits the requests that arrived during a step at the next step boundary: their encoder pass is
// one batch, their cross-attention K/V go to free rows of a pool, and they take free sequence slots of the
// self-attention caches; a step then runs every running sequence at its own position (the weights are read
// once for all of them, TextModel::step with per-row positions and biases), and a sequence that stops
// frees its slot and rows at once. Each sequence's tokens are those generate() gives it alone (greedy:
// argmax, ties to the lowest id; stops after eos or its max new tokens).
//
// The caches are allocated once, at construction, for `sequences` slots of `positions` tokens and `rows`
// encoder rows; admit() refuses what does not fit (fits() says beforehand). Shares the model's encoder
// buffers and backend with its other calls: not thread-safe, one call at a time on a model.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "pix2struct/model/generate.hpp"

namespace pix2struct {

struct ContinuousOptions {
    int64_t sequences = 8;  // sequences decoding at once (slots of the self-attention caches)
    int64_t positions = 0;  // tokens a sequence may hold, start token included (0: the model's default + 1)
    int64_t rows = 0;       // encoder rows (real patches) of the running sequences' images (0: sequences · seq_len)
};
struct ContinuousToken {
    int64_t sequence = 0;  // the id admit() returned
    int64_t token = 0;     // its new token (-1: none, a sequence admitted with nothing to generate)
    bool done = false;     // the sequence stopped after this token and left the batch
};

// The real patches (the encoder rows) of an image's attention mask.
inline int64_t real_patches(std::span<const float> mask) {
    return std::count_if(mask.begin(), mask.end(), [](float m) { return m != 0.0f; });
}

template <Backend B>
class ContinuousBatch {
public:
    using Options = ContinuousOptions;
    using Token = ContinuousToken;

    ContinuousBatch(ForConditionalGeneration<B>& model, Options options) : model_(&model), options_(options) {
        const Config& c = model.config();
        if (options_.positions <= 0) options_.positions = model.default_max_new_tokens() + 1;
        if (options_.rows <= 0) options_.rows = options_.sequences * c.vision.seq_len;
        if (options_.sequences < 1 || options_.positions < 2 || options_.rows < 1)
            detail::fail("continuous batch: sequences ", options_.sequences, ", positions ", options_.positions,
                         " and rows ", options_.rows, " must be ≥ 1, 2 and 1");
        model.check_memory(options_.rows, options_.sequences, options_.positions);
        B& backend = model.backend();
        const int layers = c.text.num_layers;
        const int64_t I = c.text.inner_dim();
        self_kv_.begin(backend, layers, options_.sequences, options_.positions, I);
        cross_kv_.reserve(backend, layers, options_.rows, I);
        cross_kv_.first.assign(size_t(options_.sequences), 0);
        cross_kv_.count.assign(size_t(options_.sequences), 0);
        cross_kv_.image.resize(size_t(options_.sequences));
        for (int64_t s = 0; s < options_.sequences; ++s) cross_kv_.image[size_t(s)] = s;  // slot s reads its own rows
        act_.reserve(backend, c.text, options_.sequences, options_.positions);
        slots_.resize(size_t(options_.sequences));
    }

    const Options& options() const { return options_; }
    int64_t running() const { return int64_t(running_.size()); }
    int64_t free_sequences() const { return options_.sequences - running(); }
    // Whether images of these real patch counts can be admitted now (free slots, and free rows for each).
    bool fits(std::span<const int64_t> rows) const {
        if (int64_t(rows.size()) > free_sequences()) return false;
        std::vector<std::pair<int64_t, int64_t>> used = used_rows();
        for (int64_t n : rows) {
            const int64_t at = first_fit(used, n);
            if (at < 0) return false;
            used.emplace_back(at, n);
            std::sort(used.begin(), used.end());
        }
        return true;
    }
    // Encodes the images in one pass and starts one greedy sequence for each; returns their sequence ids
    // (in the order given; an id is reused after its sequence has left). options[i] (or options[0] for all)
    // gives max_new_tokens, decoder_prompt, stop_at_eos and the generation config's token ids; beam search
    // and cross-attention recording are not served here (generate_batch does them).
    std::vector<int64_t> admit(std::span<const PatchInput> images, std::span<const GenerateOptions> options) {
        if (options.size() != 1 && options.size() != images.size())
            detail::fail("continuous batch: ", options.size(), " options for ", images.size(), " images");
        std::vector<int64_t> rows;
        for (const PatchInput& image : images) rows.push_back(real_patches(image.mask));
        if (!fits(rows))
            detail::fail("continuous batch: no room for ", images.size(), " more sequence(s) (", free_sequences(),
                         " free of ", options_.sequences, "; their patches need free encoder rows of ", options_.rows, ")");
        const Config& c = model_->config();
        std::vector<Sequence> fresh;
        for (size_t i = 0; i < images.size(); ++i) {
            const GenerateOptions& o = options[options.size() == 1 ? 0 : i];
            GenerationConfig g = o.generation.value_or(c.generation);
            validate(g, "continuous batch: the generation config", c.text.vocab_size);
            if (g.num_beams != 1 || o.cross_attention)
                detail::fail("continuous batch: greedy decoding only (num_beams 1, no cross-attention recording)");
            if (o.max_new_tokens < 0) detail::fail("continuous batch: max_new_tokens must be ≥ 0, got ", o.max_new_tokens);
            if (o.max_new_tokens > 0) g.max_new_tokens = o.max_new_tokens;
            Sequence s;
            s.max_new = g.new_tokens();
            s.eos = o.stop_at_eos ? g.eos_token_id : -1;
            s.next = g.decoder_start_token_id;
            s.prompt = o.decoder_prompt;
            for (int64_t p : s.prompt)
                if (p < 0 || p >= c.text.vocab_size)
                    detail::fail("continuous batch: decoder prompt token ", p, " is outside the vocabulary [0, ", c.text.vocab_size, ")");
            if (1 + int64_t(s.prompt.size()) + s.max_new > options_.positions)
                detail::fail("continuous batch: ", s.prompt.size(), " prompt and ", s.max_new, " new tokens exceed the ",
                             options_.positions - 1, " the batch was made for");
            fresh.push_back(std::move(s));
        }
        if (images.empty()) return {};
        model_->encode_batch(images);
        const std::vector<int64_t>& segments = model_->encoder_segments();
        const int64_t H = c.vision.hidden_size;
        std::vector<int64_t> ids;
        for (size_t i = 0; i < images.size(); ++i) {
            const int64_t n = segments[i + 1] - segments[i];
            if (n != rows[i]) detail::fail("continuous batch: the encoder computed ", n, " rows of image ", i, ", not its ", rows[i], " real patches");
            const int64_t slot = free_slot();
            const int64_t at = first_fit(used_rows(), n);
            model_->decoder.project_cross_kv(model_->backend(), model_->encoder_states() + segments[i] * H, n, cross_kv_, at);
            cross_kv_.first[size_t(slot)] = at;
            cross_kv_.count[size_t(slot)] = n;
            self_kv_.length[size_t(slot)] = 0;
            fresh[i].live = true;
            slots_[size_t(slot)] = std::move(fresh[i]);
            if (slots_[size_t(slot)].max_new > 0) running_.push_back(slot);
            else finished_.push_back(slot);  // nothing to generate: leaves at the next step with no token
            ids.push_back(slot);
        }
        std::sort(running_.begin(), running_.end());
        return ids;
    }

    // One decode step of every running sequence; returns each one's new token (prompt tokens are fed
    // without being returned). Sequences admitted with max_new_tokens 0 come back once, done, with token -1.
    std::vector<Token> step() {
        std::vector<Token> out;
        for (int64_t s : finished_) {
            slots_[size_t(s)].live = false;
            out.push_back({s, -1, true});
        }
        finished_.clear();
        if (running_.empty()) return out;
        B& backend = model_->backend();
        tokens_.clear();
        for (int64_t s : running_) tokens_.push_back(slots_[size_t(s)].next);
        const int64_t A = int64_t(running_.size());
        model_->decoder.step(backend, running_, tokens_, self_kv_, cross_kv_, act_);
        model_->decoder.choose_greedy(backend, A, act_);
        chosen_.resize(size_t(A));
        detail::to_host(backend, chosen_.data(), act_.token.data(), A);
        still_.clear();
        for (int64_t r = 0; r < A; ++r) {
            const int64_t id = running_[size_t(r)];
            Sequence& s = slots_[size_t(id)];
            if (s.fed < s.prompt.size()) {  // the prompt goes in one token a step, as generate_batch feeds it
                s.next = s.prompt[s.fed++];
                still_.push_back(id);
                continue;
            }
            const int64_t token = chosen_[size_t(r)];
            if (token == kNonFiniteLogits) {
                s.live = false;
                detail::fail("continuous batch: the logits of sequence ", id, "'s new token ", s.generated + 1,
                             " hold NaN or infinity (weights or activations are not finite)");
            }
            s.next = token;
            ++s.generated;
            const bool done = token == s.eos || s.generated >= s.max_new;
            out.push_back({id, token, done});
            if (done) s.live = false;
            else still_.push_back(id);
        }
        running_.swap(still_);
        return out;
    }

    // Stops a sequence now (e.g. its client went away); its slot and rows are free for the next admit().
    void cancel(int64_t sequence) {
        if (sequence < 0 || sequence >= options_.sequences || !slots_[size_t(sequence)].live) return;
        slots_[size_t(sequence)].live = false;
        std::erase(running_, sequence);
        std::erase(finished_, sequence);
    }

private:
    struct Sequence {
        std::vector<int64_t> prompt;
        size_t fed = 0;           // prompt tokens fed
        int64_t next = 0;         // the token the next step feeds
        int64_t generated = 0, max_new = 0, eos = -1;
        bool live = false;        // holds its slot and rows
    };

    int64_t free_slot() const {
        for (int64_t s = 0; s < options_.sequences; ++s)
            if (!slots_[size_t(s)].live) return s;
        return -1;
    }
    // The cross K/V rows of the live sequences, as (first, count) sorted by first.
    std::vector<std::pair<int64_t, int64_t>> used_rows() const {
        std::vector<std::pair<int64_t, int64_t>> used;
        for (int64_t s = 0; s < options_.sequences; ++s)
            if (slots_[size_t(s)].live) used.emplace_back(cross_kv_.first[size_t(s)], cross_kv_.count[size_t(s)]);
        std::sort(used.begin(), used.end());
        return used;
    }
    // The first row of the lowest gap of `n` free rows between `used` (sorted), or -1.
    int64_t first_fit(const std::vector<std::pair<int64_t, int64_t>>& used, int64_t n) const {
        int64_t at = 0;
        for (const auto& [first, count] : used) {
            if (first - at >= n) return at;
            at = std::max(at, first + count);
        }
        return options_.rows - at >= n ? at : -1;
    }

    ForConditionalGeneration<B>* model_;
    Options options_;
    SelfKV<B> self_kv_;
    CrossKV<B> cross_kv_;
    TextActivations<B> act_;
    std::vector<Sequence> slots_;
    std::vector<int64_t> running_, finished_, still_, tokens_;
    std::vector<int32_t> chosen_;
};

}  // namespace pix2struct
