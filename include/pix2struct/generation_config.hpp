// pix2struct/generation_config.hpp — how generate() decodes (transformers.GenerationConfig's fields that a
// Pix2Struct checkpoint uses) and what it can record (CrossAttention). Light to include (pipeline.hpp's
// AskOptions and Answer hold them); reading the config from JSON and checking it: config.hpp
// (generation_from_json, validate).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace pix2struct {

// transformers.GenerationConfig: how generate() decodes (the fields a Pix2Struct checkpoint uses). Read from
// generation_config.json when the checkpoint has one, else from config.json's top level (transformers'
// GenerationConfig.from_model_config); Checkpoint::load applies both rules (weights.hpp).
struct GenerationConfig {
    // transformers' early_stopping: false (the default: stop when no running beam can still beat the
    // finished ones, judged at the current length), true (stop as soon as num_beams beams finished),
    // "never" (stop when no running beam can beat them at any length).
    enum class EarlyStopping { Heuristic, Done, Never };

    int max_length = 20;      // tokens of the whole sequence, start token included (but see new_tokens())
    int max_new_tokens = 0;   // 0: unset (max_length decides)
    int num_beams = 1;        // 1: greedy
    float length_penalty = 1.0f;  // a finished beam scores sum(logprobs) / length^length_penalty
    EarlyStopping early_stopping = EarlyStopping::Heuristic;
    int no_repeat_ngram_size = 0;  // > 0: no n-gram of this size occurs twice in a sequence
    int num_return_sequences = 1;  // beams returned (≤ num_beams)
    int decoder_start_token_id = 0;
    int eos_token_id = 1;
    int pad_token_id = 0;

    // Every field once, with its JSON key and, for sizes, its bounds (config.hpp's visitors); early_stopping
    // is read and written by hand (a bool or "never").
    template <class Self, class Visitor>
    static void visit_fields(Self& c, Visitor&& v) {
        v(c.max_length, "max_length", 1, 1 << 16);
        v(c.max_new_tokens, "max_new_tokens", 0, 1 << 16);
        v(c.num_beams, "num_beams", 1, 256);
        v(c.length_penalty, "length_penalty");
        v(c.no_repeat_ngram_size, "no_repeat_ngram_size", 0, 1 << 16);
        v(c.num_return_sequences, "num_return_sequences", 1, 256);
        v(c.decoder_start_token_id, "decoder_start_token_id");
        v(c.eos_token_id, "eos_token_id");
        v(c.pad_token_id, "pad_token_id");
    }

    // New tokens generate() allows: max_new_tokens when set; else max_length counting the start token,
    // EXCEPT that max_length 20 (transformers' default) means 20 NEW tokens — GenerationMixin.
    // _prepare_generated_length adds the start token's length to a default max_length, and cannot tell an
    // explicit 20 from the default.
    int new_tokens() const { return max_new_tokens > 0 ? max_new_tokens : max_length == 20 ? 20 : max_length - 1; }
};

// Where generated tokens looked: per generated token and decoder layer, the cross-attention weights over the
// image's real patches (softmax over them, mean over the heads). Patch j is the j-th real patch, row-major
// over the patch grid of grid_rows × grid_cols (Pix2StructImageProcessor's order; the grid is filled in by
// the pipeline, which knows the image the model saw).
struct CrossAttention {
    int64_t tokens = 0, layers = 0, patches = 0;
    int64_t grid_rows = 0, grid_cols = 0;
    std::vector<float> weights;  // [tokens, layers, patches]

    std::span<const float> at(int64_t token, int64_t layer) const {
        return {weights.data() + (token * layers + layer) * patches, size_t(patches)};
    }
};

}  // namespace pix2struct
