// pix2struct/config.hpp — model and preprocessor configuration, as Hugging Face writes them.
//
//   auto config = pix2struct::Config::load("model/config.json");                // throws pix2struct::Error
//   auto pre    = pix2struct::PreprocessorConfig::load("model/preprocessor_config.json");
//   auto base   = pix2struct::Config::base();                                   // named presets
//
// Published checkpoints write only a few keys (google/pix2struct-ai2d-base's config.json names none of
// the sizes): every absent key takes the default of transformers' Pix2Struct{Text,Vision}Config, which
// are the defaults of the structs below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "pix2struct/error.hpp"
#include "pix2struct/generation_config.hpp"

namespace pix2struct {

// transformers.Pix2StructVisionConfig
struct VisionConfig {
    int hidden_size = 768;
    int patch_embed_hidden_size = 768;  // 16 · 16 · 3 pixels per patch
    int d_ff = 2048;
    int d_kv = 64;
    int num_hidden_layers = 12;
    int num_attention_heads = 12;
    int seq_len = 4096;  // rows of the row/column embedding tables
    float layer_norm_eps = 1e-6f;
    std::string dense_act_fn = "gelu_new";

    int inner_dim() const { return num_attention_heads * d_kv; }

    // Every field once, with its JSON key and, for sizes, its bounds: config.json is read, checked and
    // written by visiting these (detail::JsonReader, detail::BoundsCheck, detail::JsonWriter).
    template <class Self, class Visitor>
    static void visit_fields(Self& c, Visitor&& v) {
        v(c.hidden_size, "hidden_size", 1, 1 << 16);
        v(c.patch_embed_hidden_size, "patch_embed_hidden_size", 1, 1 << 16);
        v(c.d_ff, "d_ff", 1, 1 << 18);
        v(c.d_kv, "d_kv", 1, 1 << 12);
        v(c.num_hidden_layers, "num_hidden_layers", 1, 256);
        v(c.num_attention_heads, "num_attention_heads", 1, 1 << 10);
        v(c.seq_len, "seq_len", 1, 1 << 16);
        v(c.layer_norm_eps, "layer_norm_eps");
        v(c.dense_act_fn, "dense_act_fn");
    }
};

// transformers.Pix2StructTextConfig
struct TextConfig {
    int vocab_size = 50244;
    int hidden_size = 768;
    int d_kv = 64;
    int d_ff = 2048;
    int num_layers = 12;
    int num_heads = 12;
    int relative_attention_num_buckets = 32;
    int relative_attention_max_distance = 128;
    float layer_norm_epsilon = 1e-6f;
    std::string dense_act_fn = "gelu_new";
    int decoder_start_token_id = 0;
    int pad_token_id = 0;
    int eos_token_id = 1;

    int inner_dim() const { return num_heads * d_kv; }

    // Every field once (see VisionConfig::visit_fields). The token ids are checked against the vocabulary
    // by Config::validate.
    template <class Self, class Visitor>
    static void visit_fields(Self& c, Visitor&& v) {
        v(c.vocab_size, "vocab_size", 1, 1 << 22);
        v(c.hidden_size, "hidden_size", 1, 1 << 16);
        v(c.d_kv, "d_kv", 1, 1 << 12);
        v(c.d_ff, "d_ff", 1, 1 << 18);
        v(c.num_layers, "num_layers", 1, 256);
        v(c.num_heads, "num_heads", 1, 1 << 10);
        v(c.relative_attention_num_buckets, "relative_attention_num_buckets", 2, 1 << 12);
        v(c.relative_attention_max_distance, "relative_attention_max_distance", 1, 1 << 20);
        v(c.layer_norm_epsilon, "layer_norm_epsilon");
        v(c.dense_act_fn, "dense_act_fn");
        v(c.decoder_start_token_id, "decoder_start_token_id");
        v(c.pad_token_id, "pad_token_id");
        v(c.eos_token_id, "eos_token_id");
    }
};

namespace detail {

inline nlohmann::json read_json_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path.string(), ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    try {
        return nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception& e) {
        fail(path.string(), ": not valid JSON (", e.what(), ")");
    }
}

// Reads `key` from `obj` into `out` when present; a present key of the wrong type is an error.
template <class T>
void read_key(const nlohmann::json& obj, const char* key, T& out, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return;
    if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) fail(where, ": '", key, "' must be true or false");
    } else if constexpr (std::is_integral_v<T>) {
        if (!it->is_number_integer()) fail(where, ": '", key, "' must be an integer");
        // checked before it is narrowed: 4294967298 must not become 2 and pass the bounds
        if (it->is_number_unsigned() ? !std::in_range<T>(it->get<uint64_t>()) : !std::in_range<T>(it->get<int64_t>()))
            fail(where, ": '", key, "' is ", it->dump(), ", out of range");
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!it->is_number()) fail(where, ": '", key, "' must be a number");
    } else {
        if (!it->is_string()) fail(where, ": '", key, "' must be a string");
    }
    out = it->get<T>();
}

// Every value that sizes or indexes something is bounded, so that no product of them overflows and a
// mistaken config is one short error instead of gigabytes of allocation.
inline void require_in(int value, int lo, int hi, std::string_view key, const std::string& where) {
    if (value < lo || value > hi) fail(where, ": '", key, "' must be in [", lo, ", ", hi, "], got ", value);
}

// The visitors of visit_fields.
struct JsonReader {  // present keys into the fields, type-checked
    const nlohmann::json& obj;
    const std::string& where;
    template <class T>
    void operator()(T& field, const char* key, int = 0, int = 0) const { read_key(obj, key, field, where); }
};
struct BoundsCheck {  // sizes within their bounds; `prefix` (e.g. "vision_config.") names them in errors
    const std::string& where;
    std::string_view prefix;
    void operator()(const int& field, const char* key, int lo, int hi) const {
        require_in(field, lo, hi, std::string(prefix) + key, where);
    }
    template <class T>
    void operator()(const T&, const char*) const {}
};
struct JsonWriter {
    nlohmann::json& out;
    template <class T>
    void operator()(const T& field, const char* key, int = 0, int = 0) const { out[key] = field; }
};

}  // namespace detail

// generation_config.json's (or config.json's) present keys over `base`; `where` names the source in errors.
inline GenerationConfig generation_from_json(const nlohmann::json& j, const std::string& where,
                                             GenerationConfig base = GenerationConfig()) {
    if (!j.is_object()) detail::fail(where, ": expected a JSON object");
    GenerationConfig::visit_fields(base, detail::JsonReader{j, where});
    if (auto it = j.find("eos_token_id"); it != j.end() && it->is_array()) {  // a list: one id is supported
        if (it->size() != 1 || !(*it)[0].is_number_integer())
            detail::fail(where, ": 'eos_token_id' lists ", it->size(), " ids; one end-of-sequence id is supported");
        base.eos_token_id = (*it)[0].get<int>();
    }
    if (auto it = j.find("early_stopping"); it != j.end() && !it->is_null()) {
        using E = GenerationConfig::EarlyStopping;
        if (it->is_boolean()) base.early_stopping = it->get<bool>() ? E::Done : E::Heuristic;
        else if (*it == "never") base.early_stopping = E::Never;
        else detail::fail(where, ": 'early_stopping' must be true, false or \"never\"");
    }
    return base;
}

// Bounds, and the token ids within a vocabulary of `vocab_size`.
inline void validate(const GenerationConfig& g, const std::string& where, int vocab_size) {
    GenerationConfig::visit_fields(g, detail::BoundsCheck{where, ""});
    if (!(g.length_penalty > -1e6f && g.length_penalty < 1e6f))
        detail::fail(where, ": 'length_penalty' must be a finite number, got ", g.length_penalty);
    if (g.num_return_sequences > g.num_beams)
        detail::fail(where, ": num_return_sequences ", g.num_return_sequences, " is more than num_beams ", g.num_beams);
    for (int id : {g.decoder_start_token_id, g.pad_token_id, g.eos_token_id})
        if (id < 0 || id >= vocab_size)
            detail::fail(where, ": special token id ", id, " is outside the vocabulary of ", vocab_size);
}

inline nlohmann::json to_json(const GenerationConfig& g) {
    nlohmann::json j;
    GenerationConfig::visit_fields(g, detail::JsonWriter{j});
    if (g.max_new_tokens == 0) j.erase("max_new_tokens");
    using E = GenerationConfig::EarlyStopping;
    j["early_stopping"] = g.early_stopping == E::Never ? nlohmann::json("never") : nlohmann::json(g.early_stopping == E::Done);
    return j;
}

// transformers.Pix2StructConfig: the two halves plus what generation reads from the top level.
struct Config {
    VisionConfig vision;
    TextConfig text;
    bool is_vqa = false;  // informational: the preprocessor's is_vqa decides whether a header is drawn
    // How generate() decodes: config.json's top-level generation keys (max_length, num_beams, …), the
    // token ids as the model's; Checkpoint::load replaces it by generation_config.json's when present.
    GenerationConfig generation;

    static Config base() { return {}; }
    static Config large() {
        Config c;
        c.vision.hidden_size = c.text.hidden_size = 1536;
        c.vision.d_ff = c.text.d_ff = 3968;
        c.vision.num_hidden_layers = c.text.num_layers = 18;
        c.vision.num_attention_heads = c.text.num_heads = 24;
        return c;
    }
    // Small enough for unit tests: two layers of each, 4 heads of 16.
    static Config tiny() {
        Config c;
        c.vision.hidden_size = c.text.hidden_size = 64;
        c.vision.d_ff = c.text.d_ff = 128;
        c.vision.num_hidden_layers = c.text.num_layers = 2;
        c.vision.num_attention_heads = c.text.num_heads = 4;
        c.vision.d_kv = c.text.d_kv = 16;
        c.vision.seq_len = 64;
        c.text.vocab_size = 512;
        return c;
    }

    // The top level's own fields, once (the token ids are text_config's, written at both levels; the sizes
    // are the halves' visit_fields, the generation keys GenerationConfig's).
    template <class Self, class Visitor>
    static void visit_top_level(Self& c, Visitor&& v) {
        v(c.is_vqa, "is_vqa");
        v(c.text.decoder_start_token_id, "decoder_start_token_id");
        v(c.text.pad_token_id, "pad_token_id");
        v(c.text.eos_token_id, "eos_token_id");
    }

    static Config from_json(const nlohmann::json& j, const std::string& where) {
        if (!j.is_object()) detail::fail(where, ": expected a JSON object");
        Config c;
        // Top-level token ids are what generate() uses; text_config's (below) win when both exist,
        // as transformers copies them down.
        visit_top_level(c, detail::JsonReader{j, where});

        if (auto it = j.find("vision_config"); it != j.end() && !it->is_null()) {
            const std::string w = where + ": vision_config";
            if (!it->is_object()) detail::fail(w, ": expected a JSON object");
            VisionConfig::visit_fields(c.vision, detail::JsonReader{*it, w});
        }
        if (auto it = j.find("text_config"); it != j.end() && !it->is_null()) {
            const std::string w = where + ": text_config";
            if (!it->is_object()) detail::fail(w, ": expected a JSON object");
            TextConfig::visit_fields(c.text, detail::JsonReader{*it, w});
        }
        GenerationConfig ids;
        ids.decoder_start_token_id = c.text.decoder_start_token_id;
        ids.eos_token_id = c.text.eos_token_id;
        ids.pad_token_id = c.text.pad_token_id;
        c.generation = generation_from_json(j, where, ids);
        c.validate(where);
        return c;
    }

    static Config load(const std::filesystem::path& config_json) {
        return from_json(detail::read_json_file(config_json), config_json.string());
    }

    // The checks the model code relies on; `where` names the source in the message.
    void validate(const std::string& where) const {
        using detail::require_in;
        VisionConfig::visit_fields(vision, detail::BoundsCheck{where, "vision_config."});
        TextConfig::visit_fields(text, detail::BoundsCheck{where, "text_config."});
        require_in(vision.num_attention_heads * vision.d_kv, 1, 1 << 16, "vision_config.num_attention_heads x d_kv", where);
        require_in(text.num_heads * text.d_kv, 1, 1 << 16, "text_config.num_heads x d_kv", where);
        // The decoder's buckets: n < buckets/2 exact, then log-spaced up to max_distance, which must lie past
        // buckets/2 (else the log term is <= 0 and the bucket index negative).
        require_in(text.relative_attention_max_distance, text.relative_attention_num_buckets / 2 + 1, 1 << 20,
                   "text_config.relative_attention_max_distance (past relative_attention_num_buckets / 2)", where);
        pix2struct::validate(generation, where, text.vocab_size);
        // Cross-attention projects encoder states with text-sized weights.
        if (vision.hidden_size != text.hidden_size)
            detail::fail(where, ": vision_config.hidden_size ", vision.hidden_size, " differs from text_config.hidden_size ",
                         text.hidden_size, " (cross-attention needs them equal)");
        for (const std::string* act : {&vision.dense_act_fn, &text.dense_act_fn})
            if (*act != "gelu_new")
                detail::fail(where, ": dense_act_fn '", *act, "' is not supported (only gelu_new)");
        for (int id : {text.decoder_start_token_id, text.pad_token_id, text.eos_token_id})
            if (id < 0 || id >= text.vocab_size)
                detail::fail(where, ": special token id ", id, " is outside the vocabulary of ", text.vocab_size);
    }

    nlohmann::json to_json() const {
        nlohmann::json v = {{"model_type", "pix2struct_vision_model"}};
        VisionConfig::visit_fields(vision, detail::JsonWriter{v});
        nlohmann::json t = {{"model_type", "pix2struct_text_model"}, {"tie_word_embeddings", false}};
        TextConfig::visit_fields(text, detail::JsonWriter{t});
        nlohmann::json j = {{"architectures", {"Pix2StructForConditionalGeneration"}},
                            {"model_type", "pix2struct"},
                            {"tie_word_embeddings", false},
                            {"vision_config", v},
                            {"text_config", t}};
        visit_top_level(*this, detail::JsonWriter{j});
        j["max_length"] = generation.max_length;  // the rest goes to generation_config.json (to_json above)
        return j;
    }
};

// transformers.Pix2StructImageProcessor's settings (preprocessor_config.json).
struct PreprocessorConfig {
    int max_patches = 2048;
    int patch_height = 16;
    int patch_width = 16;
    bool is_vqa = false;  // draw the question as a header on top of the image

    // Every field once (see VisionConfig::visit_fields): the top-level keys, then patch_size's.
    template <class Self, class Visitor>
    static void visit_fields(Self& c, Visitor&& v) {
        v(c.max_patches, "max_patches", 1, 1 << 16);
        v(c.is_vqa, "is_vqa");
    }
    template <class Self, class Visitor>
    static void visit_patch_size(Self& c, Visitor&& v) {
        v(c.patch_height, "height", 1, 256);
        v(c.patch_width, "width", 1, 256);
    }

    static PreprocessorConfig from_json(const nlohmann::json& j, const std::string& where) {
        if (!j.is_object()) detail::fail(where, ": expected a JSON object");
        PreprocessorConfig p;
        visit_fields(p, detail::JsonReader{j, where});
        if (auto it = j.find("patch_size"); it != j.end() && !it->is_null()) {
            if (!it->is_object()) detail::fail(where, ": 'patch_size' must be an object {\"height\", \"width\"}");
            visit_patch_size(p, detail::JsonReader{*it, where + ": patch_size"});
        }
        visit_fields(p, detail::BoundsCheck{where, ""});
        visit_patch_size(p, detail::BoundsCheck{where, "patch_size."});
        return p;
    }

    static PreprocessorConfig load(const std::filesystem::path& preprocessor_config_json) {
        return from_json(detail::read_json_file(preprocessor_config_json), preprocessor_config_json.string());
    }

    nlohmann::json to_json() const {
        nlohmann::json j = {{"image_processor_type", "Pix2StructImageProcessor"},
                            {"processor_class", "Pix2StructProcessor"},
                            {"do_convert_rgb", true},
                            {"do_normalize", true}};
        visit_fields(*this, detail::JsonWriter{j});
        visit_patch_size(*this, detail::JsonWriter{j["patch_size"]});
        return j;
    }
};

}  // namespace pix2struct
