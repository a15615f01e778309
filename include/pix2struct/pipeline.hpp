// pix2struct/pipeline.hpp — image (+ question) → answer text: checkpoint, tokenizer, preprocessing, model.
//
//   auto p = pix2struct::Pipeline::load("pix2struct-ai2d-base/", {.threads = 2});   // throws pix2struct::Error
//   pix2struct::Answer a = p.ask(pix2struct::load_image("diagram.png"), "What is the next stage?");
//   a.text, a.ids, a.times
//
// The CPU backend (fp32) runs the model; preprocessing uses the checkpoint's preprocessor_config.json
// (max_patches, patch size, is_vqa) unless PipelineOptions override it. A VQA checkpoint (is_vqa) needs a
// question (it is drawn on the image as a header); a captioning checkpoint takes none.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/patches.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/tokenizer.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

struct PipelineOptions {
    int threads = 0;          // 0: all hardware threads
    int max_patches = 0;      // 0: the checkpoint's preprocessor_config.json (2048 for the published ones)
    std::string font_path;    // empty: the default (Liberation Sans, metric-compatible with the reference's Arial)
};

struct AskOptions {
    int max_new_tokens = 0;  // 0: HF's default length rule (20 new tokens)
    // Called with the text each new token adds to the decoded answer (streaming); return false to stop.
    std::function<bool(std::string_view piece)> on_text;
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
};

class Pipeline {
public:
    // Loads config.json, preprocessor_config.json, model.safetensors and spiece.model from `dir`.
    static Pipeline load(const std::filesystem::path& dir, const PipelineOptions& options = {}) {
        return Pipeline(dir, options);
    }

    const Config& config() const { return checkpoint_->config(); }
    const PreprocessorConfig& preprocessor() const { return checkpoint_->preprocessor(); }
    bool is_vqa() const { return preprocessor().is_vqa; }
    const Tokenizer& tokenizer() const { return tokenizer_; }
    const PreprocessOptions& preprocess_options() const { return preprocess_; }

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

    // Encode and decode already prepared patches. `prompt` (captioning checkpoints only) starts the
    // answer, as HF's processor does with text for a non-VQA checkpoint: its tokens (with </s>) become
    // the decoder prompt and the answer text includes it.
    Answer run(const Patches& patches, const AskOptions& options = {}, std::string_view prompt = {}) {
        Answer a;
        std::string shown;  // text streamed so far
        GenerateOptions g;
        g.max_new_tokens = options.max_new_tokens;
        if (!prompt.empty() && !is_vqa()) g.decoder_prompt = tokenizer_.encode(prompt);
        std::vector<int64_t> so_far = g.decoder_prompt;
        if (options.on_text && !so_far.empty()) {
            shown = tokenizer_.decode(so_far);
            if (!options.on_text(shown)) return a;
        }
        if (options.on_text)
            g.on_token = [&](int64_t token) {
                so_far.push_back(token);
                const std::string now = tokenizer_.decode(so_far);
                // decode() strips and joins pieces, so the text only ever grows at the end; emit the new tail
                if (now.size() > shown.size() && now.compare(0, shown.size(), shown) == 0) {
                    const std::string piece = now.substr(shown.size());
                    shown = now;
                    return options.on_text(piece);
                }
                return true;
            };
        const GenerateResult r = model_->generate(patches.flattened, patches.mask, g);
        a.ids = r.ids;
        a.text = tokenizer_.decode(r.ids);
        a.real_patches = r.encoder_rows;
        a.times.encoder_ms = r.times.encoder_ms;
        a.times.cross_kv_ms = r.times.cross_kv_ms;
        a.times.token_ms = r.times.token_ms;
        for (double t : r.times.token_ms) a.times.decode_ms += t;
        return a;
    }

    ForConditionalGeneration<CpuBackend>& model() { return *model_; }

private:
    Pipeline(const std::filesystem::path& dir, const PipelineOptions& options)
        : checkpoint_(std::make_unique<Checkpoint>(Checkpoint::load(dir))),
          tokenizer_(Tokenizer::load(dir)),
          backend_(std::make_unique<CpuBackend>(options.threads)) {
        const PreprocessorConfig& pc = checkpoint_->preprocessor();
        preprocess_.max_patches = options.max_patches > 0 ? options.max_patches : pc.max_patches;
        preprocess_.patch_height = pc.patch_height;
        preprocess_.patch_width = pc.patch_width;
        preprocess_.is_vqa = pc.is_vqa;
        preprocess_.font_path = options.font_path;
        const int64_t patch_dim = int64_t(pc.patch_height) * pc.patch_width * 3;
        if (patch_dim != checkpoint_->config().vision.patch_embed_hidden_size)
            detail::fail(dir.string(), ": preprocessor patch size ", pc.patch_height, "x", pc.patch_width,
                         " gives ", patch_dim, " values per patch, the model expects ",
                         checkpoint_->config().vision.patch_embed_hidden_size);
        model_ = std::make_unique<ForConditionalGeneration<CpuBackend>>(*checkpoint_, *backend_);
    }

    std::unique_ptr<Checkpoint> checkpoint_;
    Tokenizer tokenizer_;
    std::unique_ptr<CpuBackend> backend_;
    std::unique_ptr<ForConditionalGeneration<CpuBackend>> model_;
    PreprocessOptions preprocess_;
};

}  // namespace pix2struct
