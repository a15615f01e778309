// pix2struct/basic_pipeline.hpp — the pipeline on any backend: BasicPipeline<Backend> (image + question →
// answer text) and PipelineBase, its backend-independent part (checkpoint, tokenizer, preprocessing, the
// streaming decode of the answer). pix2struct::Pipeline (pipeline.hpp) holds one: BasicPipeline<CpuBackend>
// from Pipeline::load, or any backend's given to its constructor.
//
//   // in a .cu file compiled by nvcc (backend/cuda.hpp launches kernels; this header needs no Eigen):
//   auto gpu = pix2struct::BasicPipeline<pix2struct::CudaBackend>::load(dir);          // CudaBackend(checkpoint)
//   auto gpu2 = pix2struct::BasicPipeline<pix2struct::CudaBackend>::load(dir, {}, [&](const pix2struct::Checkpoint& c) {
//       return std::make_unique<pix2struct::CudaBackend>(c, cuda_options); });
//
// The backend is made from the loaded checkpoint: by `make_backend` when given, else Backend(checkpoint)
// when it has that constructor, else Backend(options.threads) (CpuBackend). A program that picks the
// backend at run time holds the pipeline as a std::unique_ptr<PipelineBase> (examples/vqa does).
#pragma once

#include <chrono>
#include <cmath>
#include <limits>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/patches.hpp"
#include "pix2struct/model/continuous.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/pipeline.hpp"
#include "pix2struct/tokenizer.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// The text an answer's tokens add as they come (streaming): decode() strips and joins pieces, so the text
// of the tokens so far only ever grows at its end; push() returns the new tail (often empty).
class TextStream {
public:
    TextStream(const Tokenizer& tokenizer, std::vector<int64_t> ids = {}) : tokenizer_(&tokenizer), ids_(std::move(ids)) {
        shown_ = ids_.empty() ? std::string() : tokenizer.decode(ids_);
    }
    std::string push(int64_t token) {
        ids_.push_back(token);
        const std::string now = tokenizer_->decode(ids_);
        if (now.size() <= shown_.size() || now.compare(0, shown_.size(), shown_) != 0) return {};
        std::string piece = now.substr(shown_.size());
        shown_ = now;
        return piece;
    }
    const std::string& text() const { return shown_; }  // of the tokens whose text has been shown

private:
    const Tokenizer* tokenizer_;
    std::vector<int64_t> ids_;
    std::string shown_;
};

// Continuous batching on a pipeline's model, whatever its backend (ContinuousBatch, model/continuous.hpp):
// Batcher (batcher.hpp) drives it. Each call takes the pipeline's model for its duration (ask() and the
// others wait), so a pipeline can serve both.
class ContinuousDecoder {
public:
    virtual ~ContinuousDecoder() = default;
    virtual bool fits(std::span<const int64_t> rows) const = 0;
    virtual std::vector<int64_t> admit(std::span<const GenerateRequest> requests) = 0;
    virtual std::vector<ContinuousToken> step() = 0;
    virtual void cancel(int64_t sequence) = 0;
};

// The backend-independent part of a pipeline; BasicPipeline<Backend> supplies generate().
class PipelineBase {
public:
    virtual ~PipelineBase() = default;

    const Config& config() const { return checkpoint_->config(); }
    const PreprocessorConfig& preprocessor() const { return checkpoint_->preprocessor(); }
    bool is_vqa() const { return preprocessor().is_vqa; }
    const Tokenizer& tokenizer() const { return tokenizer_; }
    const PreprocessOptions& preprocess_options() const { return preprocess_; }
    const Checkpoint& checkpoint() const { return *checkpoint_; }
    // The backend and the kernels it chose, for logs (e.g. "CPU, 2 threads, fp32 AVX-512, int8 AVX-512 VNNI").
    virtual std::string describe() const = 0;

    // The model input for an image and question (captioning checkpoints draw no question).
    Patches prepare(const Image& image, std::string_view question) const {
        if (is_vqa() && question.empty())
            detail::fail(checkpoint_->dir().string(), ": this is a VQA checkpoint (is_vqa in preprocessor_config.json): "
                         "a question is required");
        return preprocess(image, is_vqa() ? question : std::string_view{}, preprocess_);
    }

    // Preprocess, encode, decode. VQA checkpoints draw the question on the image (required: a missing
    // question throws pix2struct::Error); captioning checkpoints use a non-empty `question` as the start
    // of the caption (HF's conditional captioning).
    Answer ask(const Image& image, std::string_view question = {}, const AskOptions& options = {}) {
        const auto t0 = std::chrono::steady_clock::now();
        const Patches patches = prepare(image, question);
        const double pre = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        Answer a = run(patches, options, is_vqa() ? std::string_view{} : question);
        a.times.preprocess_ms = pre;
        return a;
    }

    // Several images at once (a batch): one encoder pass over all their patches, decode steps shared
    // until each answer stops; the answers are those ask() gives one by one, in order. `questions` has one
    // question per image, or one for all. Answer::times holds the batch's encoder and step times.
    std::vector<Answer> ask_batch(std::span<const Image> images, std::span<const std::string> questions,
                                  int max_new_tokens = 0) {
        if (questions.size() > 1 && questions.size() != images.size())
            detail::fail("ask_batch: ", questions.size(), " questions for ", images.size(), " images (give one per image, or one for all)");
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<Patches> patches;
        std::vector<std::string> prompts;
        for (size_t i = 0; i < images.size(); ++i) {
            const std::string_view q = questions.empty() ? std::string_view{} : questions[questions.size() == 1 ? 0 : i];
            patches.push_back(prepare(images[i], q));
            prompts.emplace_back(is_vqa() ? std::string_view{} : q);
        }
        const double pre = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        std::vector<Answer> answers = run_batch(patches, prompts, max_new_tokens);
        for (Answer& a : answers) a.times.preprocess_ms = pre;
        return answers;
    }

    // The log-likelihood of each candidate answer (Pipeline::score).
    std::vector<Choice> score(const Image& image, std::string_view question, std::span<const std::string> candidates,
                              const ScoreOptions& options = {}) {
        std::vector<std::vector<int64_t>> tokens;
        for (size_t c = 0; c < candidates.size(); ++c) {
            if (candidates[c].empty()) detail::fail("score: candidate ", c + 1, " is empty");
            tokens.push_back(tokenizer_.encode(candidates[c]));  // ends with </s>
            if (!options.with_eos) tokens.back().pop_back();
            if (tokens.back().empty()) detail::fail("score: candidate ", c + 1, " ('", candidates[c], "') has no tokens");
        }
        const Patches patches = prepare(image, question);
        const GenerateRequest request = request_for(patches, is_vqa() ? std::string_view{} : question, 0);
        const std::vector<std::vector<double>> logprobs = score_tokens(request, tokens);
        std::vector<Choice> choices(candidates.size());
        double top = -std::numeric_limits<double>::infinity(), sum = 0;
        for (size_t c = 0; c < choices.size(); ++c) {
            Choice& ch = choices[c];
            ch.text = candidates[c];
            ch.ids = tokens[c];
            for (double lp : logprobs[c]) ch.logprob += lp;
            ch.mean_logprob = ch.logprob / double(ch.ids.size());
            top = std::max(top, ch.logprob);
        }
        for (const Choice& ch : choices) sum += std::exp(ch.logprob - top);
        for (Choice& ch : choices) ch.prob = std::exp(ch.logprob - top) / sum;
        return choices;
    }

    // Encode and decode already prepared patches. `prompt` (captioning checkpoints only) starts the
    // answer, as HF's processor does with text for a non-VQA checkpoint: its tokens (with </s>) become
    // the decoder prompt and the answer text includes it.
    Answer run(const Patches& patches, const AskOptions& options = {}, std::string_view prompt = {}) {
        GenerateRequest request = request_for(patches, prompt, options.max_new_tokens);
        request.options.generation = options.generation;
        request.options.cross_attention = options.cross_attention;
        TextStream stream(tokenizer_, request.options.decoder_prompt);
        if (options.on_text && !stream.text().empty() && !options.on_text(stream.text())) return {};
        if (options.on_text)
            request.options.on_token = [&](int64_t token) {
                const std::string piece = stream.push(token);
                return piece.empty() || options.on_text(piece);
            };
        Answer a = answer(generate_batch({&request, 1})[0]);
        a.cross_attention.grid_rows = patches.rows;
        a.cross_attention.grid_cols = patches.cols;
        return a;
    }

    // run() for several prepared inputs at once; `prompts` is empty or has one per input.
    std::vector<Answer> run_batch(std::span<const Patches> patches, std::span<const std::string> prompts = {},
                                  int max_new_tokens = 0) {
        if (!prompts.empty() && prompts.size() != patches.size())
            detail::fail("run_batch: ", prompts.size(), " prompts for ", patches.size(), " inputs");
        std::vector<GenerateRequest> requests;
        for (size_t i = 0; i < patches.size(); ++i)
            requests.push_back(request_for(patches[i], prompts.empty() ? std::string_view{} : prompts[i], max_new_tokens));
        std::vector<Answer> answers;
        for (const GenerateResult& r : generate_batch(requests)) answers.push_back(answer(r));
        return answers;
    }

    // Continuous batching on this pipeline's model (ContinuousDecoder), with its own caches of `options`' size.
    virtual std::unique_ptr<ContinuousDecoder> continuous(const ContinuousOptions& options) = 0;

    // The GenerateRequest of prepared patches (its spans point into them): the caption prompt's tokens as
    // the decoder prompt (captioning checkpoints), at most max_new_tokens new tokens (0: the config's rule).
    GenerateRequest request_for(const Patches& patches, std::string_view prompt, int max_new_tokens) const {
        GenerateRequest r{patches.flattened, patches.mask, {}};
        r.options.max_new_tokens = max_new_tokens;
        if (!prompt.empty() && !is_vqa()) r.options.decoder_prompt = tokenizer_.encode(prompt);
        return r;
    }

protected:
    // Loads config.json, preprocessor_config.json, model.safetensors (with `load`) and spiece.model from `dir`.
    PipelineBase(const std::filesystem::path& dir, const PipelineOptions& options, const LoadOptions& load)
        : checkpoint_(std::make_unique<Checkpoint>(Checkpoint::load(dir, load))),
          tokenizer_(Tokenizer::load(dir)) {
        const PreprocessorConfig& pc = checkpoint_->preprocessor();
        preprocess_.max_patches = options.max_patches > 0 ? options.max_patches : pc.max_patches;
        preprocess_.patch_height = pc.patch_height;
        preprocess_.patch_width = pc.patch_width;
        preprocess_.is_vqa = pc.is_vqa;
        preprocess_.font_path = options.font_path;
        preprocess_.max_memory_bytes = options.max_memory_bytes;
        if (preprocess_.max_patches > checkpoint_->config().vision.seq_len)
            detail::fail(dir.string(), ": max_patches ", preprocess_.max_patches, " is more than the model's ",
                         checkpoint_->config().vision.seq_len, " patch positions (vision_config.seq_len)");
        const int64_t patch_dim = int64_t(pc.patch_height) * pc.patch_width * 3;
        if (patch_dim != checkpoint_->config().vision.patch_embed_hidden_size)
            detail::fail(dir.string(), ": preprocessor patch size ", pc.patch_height, "x", pc.patch_width,
                         " gives ", patch_dim, " values per patch, the model expects ",
                         checkpoint_->config().vision.patch_embed_hidden_size);
    }
    PipelineBase(PipelineBase&&) = default;
    PipelineBase& operator=(PipelineBase&&) = default;

    // The model on the backend: ForConditionalGeneration<Backend>::generate_batch and ::score.
    virtual std::vector<GenerateResult> generate_batch(std::span<const GenerateRequest> requests) = 0;
    virtual std::vector<std::vector<double>> score_tokens(const GenerateRequest& request,
                                                          std::span<const std::vector<int64_t>> candidates) = 0;

private:
    Answer answer(const GenerateResult& r) const {
        Answer a;
        a.ids = r.ids;
        a.text = tokenizer_.decode(r.ids);
        a.real_patches = r.encoder_rows;
        a.times.encoder_ms = r.times.encoder_ms;
        a.times.cross_kv_ms = r.times.cross_kv_ms;
        a.times.token_ms = r.times.token_ms;
        for (double t : r.times.token_ms) a.times.decode_ms += t;
        for (const Hypothesis& h : r.sequences) a.sequences.push_back({tokenizer_.decode(h.ids), h.ids, h.score});
        a.cross_attention = r.cross_attention;
        return a;
    }

    std::unique_ptr<Checkpoint> checkpoint_;  // on the heap: the backend and model keep pointers into it
    Tokenizer tokenizer_;
    PreprocessOptions preprocess_;
};

template <class Backend>
class BasicPipeline : public PipelineBase {
public:
    // Makes the backend for the loaded checkpoint (which outlives it).
    using BackendFactory = std::function<std::unique_ptr<Backend>(const Checkpoint&)>;

    // Loads config.json, preprocessor_config.json, model.safetensors and spiece.model from `dir`; the
    // backend is make_backend(checkpoint) when given, else Backend(checkpoint) or Backend(options.threads).
    static BasicPipeline load(const std::filesystem::path& dir, const PipelineOptions& options = {},
                              const BackendFactory& make_backend = {}) {
        return BasicPipeline(dir, options, make_backend);
    }

    BasicPipeline(BasicPipeline&&) = default;
    BasicPipeline& operator=(BasicPipeline&&) = default;

    Backend& backend() { return *backend_; }
    std::string describe() const override {
        if constexpr (requires { backend_->describe(); }) return backend_->describe();
        else return "a backend without describe()";
    }
    ForConditionalGeneration<Backend>& model() { return *model_; }

protected:
    // One model, one set of activations and caches: calls from several threads are served one at a time
    // (a thread waits while another's batch runs; for throughput, give several questions to one ask_batch).
    std::vector<GenerateResult> generate_batch(std::span<const GenerateRequest> requests) override {
        std::lock_guard lock(*busy_);
        return model_->generate_batch(requests);
    }
    std::vector<std::vector<double>> score_tokens(const GenerateRequest& request,
                                                  std::span<const std::vector<int64_t>> candidates) override {
        std::lock_guard lock(*busy_);
        return model_->score(request.flattened, request.mask, request.options.decoder_prompt, candidates);
    }

public:
    std::unique_ptr<ContinuousDecoder> continuous(const ContinuousOptions& options) override {
        std::lock_guard lock(*busy_);
        return std::make_unique<Continuous>(*model_, options, *busy_);
    }

private:
    BasicPipeline(const std::filesystem::path& dir, const PipelineOptions& options, const BackendFactory& make_backend)
        : PipelineBase(dir, options,
                       {.mmap = options.mmap, .decode_copies = reads_host_weights<Backend> && options.dtype != Dtype::Int8}) {
        if (options.dtype != Dtype::F32 && !make_backend)
            detail::fail("PipelineOptions::dtype ", dtype_name(options.dtype), ": give BasicPipeline::load a make_backend that "
                         "makes a backend for it (Pipeline::load does, for the CPU)");
        if (make_backend) {
            backend_ = make_backend(checkpoint());
            if (!backend_) detail::fail(dir.string(), ": the backend factory returned no backend");
        } else if constexpr (std::constructible_from<Backend, const Checkpoint&>) {
            backend_ = std::make_unique<Backend>(checkpoint());
        } else {
            static_assert(std::constructible_from<Backend, int>,
                          "BasicPipeline: the Backend is made from the Checkpoint or a thread count; pass make_backend");
            backend_ = std::make_unique<Backend>(options.threads);
        }
        model_ = std::make_unique<ForConditionalGeneration<Backend>>(checkpoint(), *backend_);
        model_->set_memory_budget(options.max_memory_bytes);
        model_->check_memory(preprocess_options().max_patches, 1, model_->default_max_new_tokens() + 1);
    }

    class Continuous : public ContinuousDecoder {
    public:
        Continuous(ForConditionalGeneration<Backend>& model, const ContinuousOptions& options, std::mutex& busy)
            : batch_(model, options), busy_(&busy) {}
        bool fits(std::span<const int64_t> rows) const override { return batch_.fits(rows); }
        std::vector<int64_t> admit(std::span<const GenerateRequest> requests) override {
            std::vector<PatchInput> images;
            std::vector<GenerateOptions> options;
            for (const GenerateRequest& r : requests) {
                images.push_back({r.flattened, r.mask});
                options.push_back(r.options);
            }
            std::lock_guard lock(*busy_);
            return batch_.admit(images, options);
        }
        std::vector<ContinuousToken> step() override {
            std::lock_guard lock(*busy_);
            return batch_.step();
        }
        void cancel(int64_t sequence) override { batch_.cancel(sequence); }

    private:
        ContinuousBatch<Backend> batch_;
        std::mutex* busy_;
    };

    std::unique_ptr<Backend> backend_;  // declared before model_: destroyed after it
    std::unique_ptr<ForConditionalGeneration<Backend>> model_;
    std::unique_ptr<std::mutex> busy_ = std::make_unique<std::mutex>();  // on the heap: the pipeline stays movable
};

}  // namespace pix2struct
