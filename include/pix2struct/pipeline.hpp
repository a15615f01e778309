// pix2struct/pipeline.hpp — the API: image (+ question) → answer text. Light to include (no Eigen, no
// codecs, no JSON): its functions are compiled once, in the file of the program that defines
// PIX2STRUCT_IMPLEMENTATION before including pix2struct/pix2struct.hpp (implementation.hpp).
//
//   auto p = pix2struct::Pipeline::load("pix2struct-ai2d-base/", {.threads = 2});   // throws pix2struct::Error
//   pix2struct::Answer a = p.ask(pix2struct::load_image("diagram.png"), "What is the next stage?");
//   a.text, a.ids, a.times
//
// Pipeline::load runs the model on the CPU backend (fp32 arithmetic; the kernels for this CPU are chosen at
// run time); preprocessing uses the checkpoint's preprocessor_config.json (max_patches, patch size,
// is_vqa) unless PipelineOptions override it. A VQA checkpoint (is_vqa) needs a question (it is drawn on the
// image as a header); a captioning checkpoint takes none. A Pipeline can also hold a pipeline on another
// backend: Pipeline(std::make_unique<BasicPipeline<CudaBackend>>(...)) (basic_pipeline.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/generation_config.hpp"
#include "pix2struct/image/image.hpp"

namespace pix2struct {

class PipelineBase;  // basic_pipeline.hpp: checkpoint, tokenizer, preprocessing and the model on a backend

// What the CPU computes in. F32: exactly the reference's arithmetic (the default). Int8: the matrix products in
// int8 (the linear layers' weights quantised at load, per output row, activations per row; the encoder's
// attention), norms, softmax and the residual stream in fp32 — about 2.3x faster end to end, with answers
// that can differ where the model is unsure (bench/RESULTS.md, "Int8"). Bf16: what the reference computes with
// torch_dtype=bfloat16 and the GPU's bf16 path computes (bf16 weights and activations, fp32 accumulation), for
// parity and debugging; no faster than F32 on a CPU.
enum class Dtype { F32, Int8, Bf16 };

inline const char* dtype_name(Dtype d) { return d == Dtype::Int8 ? "int8" : d == Dtype::Bf16 ? "bf16" : "f32"; }
// The Dtype dtype_name() calls `name` ("f32", "int8" or "bf16"); an Error for any other.
inline Dtype dtype_from_name(std::string_view name) {
    for (const Dtype d : {Dtype::F32, Dtype::Int8, Dtype::Bf16})
        if (name == dtype_name(d)) return d;
    throw Error("unknown dtype '" + std::string(name) + "' (f32, int8 or bf16)");
}

struct PipelineOptions {
    int threads = 0;          // CPU backend threads (0: all hardware threads)
    int max_patches = 0;      // 0: the checkpoint's preprocessor_config.json (published: 2048 base, 4096
                              // large; transformers' Pix2StructProcessor passes 2048 unless told: README)
    Dtype dtype = Dtype::F32; // the CPU's arithmetic (F32, Int8 or Bf16)
    std::string font_path{};  // empty: the default (Liberation Sans, metric-compatible with the reference's Arial)
    bool mmap = true;         // false: read model.safetensors into memory (LoadOptions::mmap)
    // Most bytes of activations and caches a question (or batch) may take, and of preprocessing its picture;
    // one over it is an Error naming this option, checked at load for one question of max_patches and before
    // each call. 0: physical memory.
    int64_t max_memory_bytes = 0;
};

struct AskOptions {
    int max_new_tokens = 0;  // 0: the generation config's length rule (20 new tokens unless it says otherwise)
    // Called with the text each new token adds to the decoded answer (streaming); return false to stop. With
    // beam search, called with the best beam's text once the search ends.
    std::function<bool(std::string_view piece)> on_text{};
    // How to decode (num_beams, length_penalty, early_stopping, no_repeat_ngram_size, num_return_sequences,
    // the token ids); unset: the checkpoint's (Pipeline::generation(): generation_config.json, else config.json).
    std::optional<GenerationConfig> generation{};
    bool cross_attention = false;  // fill Answer::cross_attention (greedy decoding)
};

// A beam returned by beam search.
struct Sequence {
    std::string text;
    std::vector<int64_t> ids;
    float score = 0;  // transformers' sequences_scores: sum of log-probabilities / length^length_penalty
};

// A candidate answer scored by Pipeline::score.
struct Choice {
    std::string text;
    std::vector<int64_t> ids;   // its tokens (with the trailing </s> unless ScoreOptions::with_eos is false)
    double logprob = 0;         // Σ log p(token | image, question, the tokens before it), teacher-forced
    double mean_logprob = 0;    // logprob / number of tokens
    double prob = 0;            // exp(logprob) normalised over the candidates
};

struct ScoreOptions {
    // true (the default): score the candidate as the WHOLE answer, its tokens then </s>, as the checkpoint was
    // trained to write answers. Without </s> a candidate scores how the answer starts, and one that is a
    // prefix of another ("lava" / "lava flow") can never score below it.
    bool with_eos = true;
};

struct Answer {
    std::string text;           // decoded, special tokens skipped (HF: decode(ids, skip_special_tokens=True))
    std::vector<int64_t> ids;   // without the start token: the caption prompt's tokens (if any), then the generated
                                // ones; ends with eos (1) if it stopped there
    int64_t real_patches = 0;   // patches the encoder computed (rows × cols of the resized image)
    struct Times {
        double preprocess_ms = 0, encoder_ms = 0, cross_kv_ms = 0, decode_ms = 0;
        std::vector<double> token_ms;
    } times;
    std::vector<Sequence> sequences;  // beam search: the num_return_sequences best beams, best first (ids: the first's)
    CrossAttention cross_attention;   // when AskOptions::cross_attention asked for it
};

class Pipeline {
public:
    // Loads config.json, preprocessor_config.json, model.safetensors and spiece.model from `dir`, with the
    // model on the CPU backend.
    static Pipeline load(const std::filesystem::path& dir, const PipelineOptions& options = {});
    // Holds a pipeline on any backend (e.g. BasicPipeline<CudaBackend>, from a .cu file).
    explicit Pipeline(std::unique_ptr<PipelineBase> pipeline);
    Pipeline(Pipeline&&) noexcept;
    Pipeline& operator=(Pipeline&&) noexcept;
    ~Pipeline();

    // Preprocess, encode, decode. VQA checkpoints draw the question on the image (required: a missing
    // question throws pix2struct::Error); captioning checkpoints use a non-empty `question` as the start of
    // the caption (HF's conditional captioning).
    Answer ask(const Image& image, std::string_view question = {}, const AskOptions& options = {});
    // Several images at once (a batch): one encoder pass over all their patches, decode steps shared until
    // each answer stops; the answers are those ask() gives one by one, in order. `questions` has one question
    // per image, or one for all. Answer::times holds the batch's encoder and step times.
    std::vector<Answer> ask_batch(std::span<const Image> images, std::span<const std::string> questions,
                                  int max_new_tokens = 0);
    // The log-likelihood of each candidate answer to the question (see Choice, ScoreOptions): one encoder pass
    // and one batched teacher-forced decoder pass for all of them. Candidates must be non-empty.
    std::vector<Choice> score(const Image& image, std::string_view question, std::span<const std::string> candidates,
                              const ScoreOptions& options = {});
    // The model input for an image and question (captioning checkpoints draw no question).
    Patches prepare(const Image& image, std::string_view question) const;
    // Encode and decode prepared patches; `prompt` (captioning checkpoints only) starts the answer.
    Answer run(const Patches& patches, const AskOptions& options = {}, std::string_view prompt = {});
    std::vector<Answer> run_batch(std::span<const Patches> patches, std::span<const std::string> prompts = {},
                                  int max_new_tokens = 0);

    bool is_vqa() const;    // preprocessor_config.json's is_vqa: questions are drawn on the image
    const GenerationConfig& generation() const;  // how ask() decodes unless AskOptions::generation says otherwise
    int max_patches() const;  // the patch budget of prepare()
    std::string describe() const;  // the backend and the kernels it chose, for logs
    // Everything else (config, checkpoint, tokenizer, preprocessing options): include basic_pipeline.hpp.
    PipelineBase& base() { return *pipeline_; }
    const PipelineBase& base() const { return *pipeline_; }

private:
    std::unique_ptr<PipelineBase> pipeline_;
};

}  // namespace pix2struct
