// pix2struct/weights.hpp — binds the tensors of a Hugging Face Pix2Struct checkpoint to parameter structs.
//
//   auto ckpt = pix2struct::Checkpoint::load("pix2struct-ai2d-base/");   // throws pix2struct::Error
//   const pix2struct::Weight& wq = ckpt.vision().layers[0].attention.query;  // [inner, hidden] fp32 view
//
// A model folder holds config.json, preprocessor_config.json and model.safetensors (F32, F16 or BF16
// tensors, as `save_pretrained` writes them). Binding walks every name the config implies, checks
// each shape, and reports every missing, mis-shaped, badly typed and unexpected tensor in one error.
// F32 tensors are used in place (zero-copy from the mapping); F16/BF16 are converted to float once.
// What a backend multiplies by is held beside each Weight, made once at load: the fp32 view, and for
// the decoder's matrices stored as BF16 their bytes on huge pages (the CPU's decode GEMVs). A backend that
// keeps copies of its own (a GPU's) holds them in a table indexed by Weight::index.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstring>
#include <type_traits>
#include <filesystem>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <vector>
#include <sys/mman.h>

#include "pix2struct/config.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/safetensors.hpp"

namespace pix2struct {

// One parameter: a float32 row-major view plus the tensor as stored. Linear weights are [out, in]
// as in torch nn.Linear (y = x · Wᵀ).
struct Weight {
    std::string name;
    std::vector<int64_t> shape;
    const float* data = nullptr;          // null when the checkpoint was loaded without float views
    const TensorView* source = nullptr;   // dtype and bytes in the file, e.g. for a bf16 upload
    const uint16_t* bf16 = nullptr;       // the stored BF16 values on huge pages: a decode-step matrix of a
                                          // BF16 checkpoint loaded with LoadOptions::decode_copies; else null
    int index = -1;                       // position in checkpoint order (Checkpoint::for_each): a backend's
                                          // table of its own copies is indexed by it

    int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
    int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
    int64_t size() const { return rows() * cols(); }
};

// Pix2StructVisionAttention / Pix2StructTextAttention: the four projections (no biases).
struct AttentionWeights {
    Weight query, key, value;               // [inner, H]
    Weight output;                          // [H, inner]
};

// Pix2StructVisionMlp / Pix2StructTextDenseGatedActDense: the gated-GELU MLP.
struct GatedMlpWeights {
    Weight wi_0, wi_1;                      // [F, H]
    Weight wo;                              // [H, F]
};

// Pix2StructVisionLayer
struct VisionLayerWeights {
    Weight pre_attention_layer_norm;        // [H]
    AttentionWeights attention;
    Weight pre_mlp_layer_norm;              // [H]
    GatedMlpWeights mlp;
};

// Pix2StructVisionModel: embeddings, layers, final norm.
struct VisionWeights {
    Weight patch_projection_weight;         // [H, 768]
    Weight patch_projection_bias;           // [H]
    Weight row_embedder, column_embedder;   // [seq_len, H]
    std::vector<VisionLayerWeights> layers;
    Weight layernorm;                       // [H]
};

// Pix2StructTextBlock
struct TextLayerWeights {
    Weight self_attention_layer_norm;       // [H]
    AttentionWeights self_attention;
    Weight cross_attention_layer_norm;      // [H]
    AttentionWeights cross_attention;       // encoder_decoder_attention
    Weight mlp_layer_norm;                  // [H]
    GatedMlpWeights mlp;                    // DenseReluDense
};

// Pix2StructTextModel
struct TextWeights {
    Weight embed_tokens;                    // [V, H]
    Weight relative_attention_bias;         // [buckets, heads], layer 0's, shared by every layer
    std::vector<TextLayerWeights> layers;
    Weight final_layer_norm;                // [H]
    Weight lm_head;                         // [V, H], not tied to embed_tokens
};

// Calls f(weight, full_name, expected_shape) for every parameter the config implies, in checkpoint
// order. Binding and the random-checkpoint writer walk it over structs it sizes; Checkpoint::for_each
// walks it over the bound (const) structs.
template <class VW, class TW, class F>
    requires std::same_as<std::remove_const_t<VW>, VisionWeights> && std::same_as<std::remove_const_t<TW>, TextWeights>
void for_each_weight(const Config& config, VW& vision, TW& text, F&& f) {
    const VisionConfig& v = config.vision;
    const TextConfig& t = config.text;
    const int64_t H = v.hidden_size, Fv = v.d_ff, Iv = v.inner_dim();
    const int64_t Ht = t.hidden_size, Ft = t.d_ff, It = t.inner_dim(), V = t.vocab_size;

    const std::string e = "encoder.";
    f(vision.patch_projection_weight, e + "embeddings.patch_projection.weight", {H, v.patch_embed_hidden_size});
    f(vision.patch_projection_bias, e + "embeddings.patch_projection.bias", {H});
    f(vision.row_embedder, e + "embeddings.row_embedder.weight", {v.seq_len, H});
    f(vision.column_embedder, e + "embeddings.column_embedder.weight", {v.seq_len, H});
    if constexpr (!std::is_const_v<VW>) vision.layers.resize(size_t(v.num_hidden_layers));
    for (int i = 0; i < v.num_hidden_layers; ++i) {
        auto& L = vision.layers[size_t(i)];
        const std::string p = e + "encoder.layer." + std::to_string(i) + ".";
        f(L.pre_attention_layer_norm, p + "pre_attention_layer_norm.weight", {H});
        f(L.attention.query, p + "attention.query.weight", {Iv, H});
        f(L.attention.key, p + "attention.key.weight", {Iv, H});
        f(L.attention.value, p + "attention.value.weight", {Iv, H});
        f(L.attention.output, p + "attention.output.weight", {H, Iv});
        f(L.pre_mlp_layer_norm, p + "pre_mlp_layer_norm.weight", {H});
        f(L.mlp.wi_0, p + "mlp.wi_0.weight", {Fv, H});
        f(L.mlp.wi_1, p + "mlp.wi_1.weight", {Fv, H});
        f(L.mlp.wo, p + "mlp.wo.weight", {H, Fv});
    }
    f(vision.layernorm, e + "layernorm.weight", {H});

    const std::string d = "decoder.";
    f(text.embed_tokens, d + "embed_tokens.weight", {V, Ht});
    f(text.relative_attention_bias, d + "layer.0.self_attention.attention.relative_attention_bias.weight",
      {t.relative_attention_num_buckets, t.num_heads});
    if constexpr (!std::is_const_v<TW>) text.layers.resize(size_t(t.num_layers));
    for (int i = 0; i < t.num_layers; ++i) {
        auto& L = text.layers[size_t(i)];
        const std::string p = d + "layer." + std::to_string(i) + ".";
        f(L.self_attention_layer_norm, p + "self_attention.layer_norm.weight", {Ht});
        f(L.self_attention.query, p + "self_attention.attention.query.weight", {It, Ht});
        f(L.self_attention.key, p + "self_attention.attention.key.weight", {It, Ht});
        f(L.self_attention.value, p + "self_attention.attention.value.weight", {It, Ht});
        f(L.self_attention.output, p + "self_attention.attention.output.weight", {Ht, It});
        f(L.cross_attention_layer_norm, p + "encoder_decoder_attention.layer_norm.weight", {Ht});
        f(L.cross_attention.query, p + "encoder_decoder_attention.attention.query.weight", {It, Ht});
        f(L.cross_attention.key, p + "encoder_decoder_attention.attention.key.weight", {It, Ht});
        f(L.cross_attention.value, p + "encoder_decoder_attention.attention.value.weight", {It, Ht});
        f(L.cross_attention.output, p + "encoder_decoder_attention.attention.output.weight", {Ht, It});
        f(L.mlp_layer_norm, p + "mlp.layer_norm.weight", {Ht});
        f(L.mlp.wi_0, p + "mlp.DenseReluDense.wi_0.weight", {Ft, Ht});
        f(L.mlp.wi_1, p + "mlp.DenseReluDense.wi_1.weight", {Ft, Ht});
        f(L.mlp.wo, p + "mlp.DenseReluDense.wo.weight", {Ht, Ft});
    }
    f(text.final_layer_norm, d + "final_layer_norm.weight", {Ht});
    f(text.lm_head, d + "lm_head.weight", {V, Ht});
}

// Calls f(weight) for every matrix a decode step reads, in order: each text layer's self-attention
// projections, the cross-attention query and output (its key and value run once per image), the MLP; then
// lm_head.
template <class TW, class F>
    requires std::same_as<std::remove_const_t<TW>, TextWeights>
void for_each_decode_matrix(TW& text, F&& f) {
    for (auto& l : text.layers)
        for (auto* w : {&l.self_attention.query, &l.self_attention.key, &l.self_attention.value, &l.self_attention.output,
                        &l.cross_attention.query, &l.cross_attention.output, &l.mlp.wi_0, &l.mlp.wi_1, &l.mlp.wo})
            f(*w);
    f(text.lm_head);
}

struct LoadOptions {
    // Give every Weight a float32 view (the CPU path). A GPU path that uploads the stored bf16 bytes
    // may turn it off and read Weight::source only.
    bool float_views = true;
    // Map model.safetensors (pages are read on demand and shared with the page cache; the file must not be
    // truncated or rewritten while loaded) or, false, read it whole into memory (immune to such changes).
    bool mmap = true;
    // Give the decode step's matrices stored as BF16 (the text layers' except cross-attention key/value, and
    // lm_head) a copy of their bytes on huge pages, Weight::bf16: the CPU's decode GEMVs read them (half of
    // fp32's bytes; from the file mapping's 4 KiB pages they measured ~1.8x slower). A backend with copies of
    // its own does not need them (BasicPipeline asks only for a backend with reads_host_weights).
    bool decode_copies = true;
};

namespace detail {

// Heap memory aligned to, and advised as, 2 MiB huge pages.
struct HugePageFree {
    static constexpr size_t kHuge = size_t(2) << 20;
    void operator()(void* p) const { ::operator delete[](p, std::align_val_t(kHuge)); }
};
using HugePageBytes = std::unique_ptr<void, HugePageFree>;

inline HugePageBytes huge_page_alloc(size_t bytes) {
    const size_t huge = HugePageFree::kHuge, alloc = std::max((bytes + huge - 1) / huge * huge, huge);
    void* p = ::operator new[](alloc, std::align_val_t(huge));
#ifdef MADV_HUGEPAGE
    ::madvise(p, alloc, MADV_HUGEPAGE);
#endif
    return HugePageBytes(p);
}

inline HugePageBytes huge_page_copy(std::span<const std::byte> src) {
    HugePageBytes p = huge_page_alloc(src.size());
    std::memcpy(p.get(), src.data(), src.size());
    return p;
}

}  // namespace detail

class Checkpoint {
public:
    // Loads config.json, preprocessor_config.json and model.safetensors from a model folder.
    static Checkpoint load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
        if (!std::filesystem::is_directory(dir))
            detail::fail(dir.string(), ": model folder not found (expected config.json, preprocessor_config.json, "
                                       "model.safetensors)");
        for (const char* f : {"config.json", "preprocessor_config.json", "model.safetensors"})
            if (!std::filesystem::exists(dir / f))
                detail::fail(dir.string(), ": incomplete model folder: ", f, " is missing");
        Checkpoint c = from_file(Config::load(dir / "config.json"), dir / "model.safetensors", options);
        c.preprocessor_ = PreprocessorConfig::load(dir / "preprocessor_config.json");
        if (std::filesystem::exists(dir / "generation_config.json")) c.config_.generation = load_generation(dir, c.config_);
        c.dir_ = dir;
        return c;
    }

    // Binds a safetensors file to a given config (no folder needed; preprocessor defaults).
    static Checkpoint from_file(const Config& config, const std::filesystem::path& safetensors,
                                const LoadOptions& options = {}) {
        Checkpoint c;
        c.config_ = config;
        c.file_ = std::make_unique<SafetensorsFile>(options.mmap ? SafetensorsFile::open(safetensors)
                                                                 : SafetensorsFile::read(safetensors));
        c.dir_ = safetensors.parent_path();
        c.bind(options);
        return c;
    }

    // generation_config.json over transformers' defaults (GenerationConfig.from_pretrained), except that a
    // file written from the model config ("_from_model_config": true) gives way to config.json's generation
    // keys when those are not all defaults (GenerationMixin._prepare_generation_config's legacy rule).
    // `config` is config.json's.
    static GenerationConfig load_generation(const std::filesystem::path& dir, const Config& config) {
        const std::string path = (dir / "generation_config.json").string();
        const nlohmann::json j = detail::read_json_file(path);
        GenerationConfig g = generation_from_json(j, path);
        bool from_model_config = false;
        detail::read_key(j, "_from_model_config", from_model_config, path);
        GenerationConfig defaults;  // transformers' defaults of the decoding keys (token ids aside)
        defaults.decoder_start_token_id = config.generation.decoder_start_token_id;
        defaults.eos_token_id = config.generation.eos_token_id;
        defaults.pad_token_id = config.generation.pad_token_id;
        if (from_model_config && to_json(config.generation) != to_json(defaults)) g = config.generation;
        validate(g, path, config.text.vocab_size);
        return g;
    }

    const Config& config() const { return config_; }
    const PreprocessorConfig& preprocessor() const { return preprocessor_; }
    const VisionWeights& vision() const { return vision_; }
    const TextWeights& text() const { return text_; }
    const SafetensorsFile& file() const { return *file_; }

    // Calls f(const Weight&) for every parameter, in checkpoint order (e.g. to upload them all).
    template <class F>
    void for_each(F&& f) const {
        for_each_weight(config_, vision_, text_, [&](const Weight& w, const std::string&, std::vector<int64_t>) { f(w); });
    }
    const std::filesystem::path& dir() const { return dir_; }

private:
    // Collects every problem before throwing, so a user sees the whole list at once.
    struct Binder {
        const SafetensorsFile& file;
        bool float_views;
        std::vector<std::unique_ptr<float[]>>& storage;
        std::set<std::string> used;
        std::vector<std::string> problems;
        int index = 0;

        void operator()(Weight& w, const std::string& name, std::vector<int64_t> shape) {
            used.insert(name);
            w.name = name;
            w.shape = shape;
            w.index = index++;
            const TensorView* t = file.find(name);
            if (!t) {
                problems.push_back("missing tensor '" + name + "' " + shape_string(shape));
                return;
            }
            if (t->shape != shape) {
                problems.push_back("tensor '" + name + "' has shape " + shape_string(t->shape) +
                                   ", the config implies " + shape_string(shape));
                return;
            }
            if (t->dtype != DType::F32 && t->dtype != DType::BF16 && t->dtype != DType::F16) {
                problems.push_back("tensor '" + name + "' is " + std::string(dtype_name(t->dtype)) +
                                   " (expected F32, BF16 or F16)");
                return;
            }
            w.source = t;
            if (!float_views) return;
            if (t->dtype == DType::F32 && reinterpret_cast<uintptr_t>(t->bytes.data()) % alignof(float) == 0) {
                w.data = reinterpret_cast<const float*>(t->bytes.data());  // zero-copy
            } else {
                auto buf = std::make_unique<float[]>(size_t(t->numel()));
                t->to_float(buf.get());
                w.data = buf.get();
                storage.push_back(std::move(buf));
            }
        }
    };

    void bind(const LoadOptions& options) {
        Binder b{*file_, options.float_views, storage_, {}, {}};
        for_each_weight(config_, vision_, text_, b);
        for (const TensorView& tv : file_->tensors())
            if (!b.used.count(tv.name)) b.problems.push_back("unexpected tensor '" + tv.name + "'");
        if (!b.problems.empty()) {
            std::string msg = file_->path().string() + ": checkpoint does not match its config (" +
                              std::to_string(b.problems.size()) + " problem" + (b.problems.size() > 1 ? "s" : "") + "):";
            constexpr size_t kShown = 20;  // a config naming 10^5 layers must not print 10^6 lines
            for (size_t i = 0; i < std::min(kShown, b.problems.size()); ++i) msg += "\n  " + b.problems[i];
            if (b.problems.size() > kShown) msg += "\n  ... and " + std::to_string(b.problems.size() - kShown) + " more";
            throw Error(msg);
        }
        if (options.decode_copies && options.float_views) {
            for_each_decode_matrix(text_, [&](Weight& w) {
                if (w.source->dtype != DType::BF16) return;
                huge_pages_.push_back(detail::huge_page_copy(w.source->bytes));
                w.bf16 = static_cast<const uint16_t*>(huge_pages_.back().get());
            });
        }
    }

    Config config_;
    PreprocessorConfig preprocessor_;
    std::filesystem::path dir_;
    std::unique_ptr<SafetensorsFile> file_;
    std::vector<std::unique_ptr<float[]>> storage_;
    std::vector<detail::HugePageBytes> huge_pages_;
    VisionWeights vision_;
    TextWeights text_;
};

}  // namespace pix2struct
