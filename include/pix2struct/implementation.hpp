// pix2struct/implementation.hpp — the definitions of the API's functions (pipeline.hpp, image/image.hpp).
// Included by pix2struct/pix2struct.hpp in the one file of a program that defines PIX2STRUCT_IMPLEMENTATION
// first (as stb's single-file libraries do): that file compiles Eigen, the codecs and the model once.
#pragma once

#include <memory>
#include <utility>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/pipeline.hpp"
#include "pix2struct/read_file.hpp"

namespace pix2struct {

Image load_image_from_memory(std::span<const std::byte> data, std::string_view name, const ImageLimits& limits) {
    return detail::decode_image(data, name, limits);
}

Image load_image(const std::filesystem::path& path, const ImageLimits& limits) {
    return detail::decode_image(detail::read_whole_file(path, "the image file", limits.max_file_bytes), path.string(),
                                limits);
}

namespace detail {
template <class B>
Pipeline load_cpu(const std::filesystem::path& dir, const PipelineOptions& options) {
    return Pipeline(std::make_unique<BasicPipeline<B>>(BasicPipeline<B>::load(dir, options, [&](const Checkpoint& c) {
        return std::make_unique<B>(c, CpuOptions{.threads = options.threads, .dtype = options.dtype});
    })));
}
}  // namespace detail

Pipeline Pipeline::load(const std::filesystem::path& dir, const PipelineOptions& options) {
    switch (options.dtype) {
        case Dtype::Int8: return detail::load_cpu<CpuInt8Backend>(dir, options);
        case Dtype::Bf16: return detail::load_cpu<CpuBf16Backend>(dir, options);
        default: return detail::load_cpu<CpuBackend>(dir, options);
    }
}

Pipeline::Pipeline(std::unique_ptr<PipelineBase> pipeline) : pipeline_(std::move(pipeline)) {
    if (!pipeline_) detail::fail("Pipeline: given no pipeline");
}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Answer Pipeline::ask(const Image& image, std::string_view question, const AskOptions& options) {
    return pipeline_->ask(image, question, options);
}
std::vector<Answer> Pipeline::ask_batch(std::span<const Image> images, std::span<const std::string> questions,
                                        int max_new_tokens) {
    return pipeline_->ask_batch(images, questions, max_new_tokens);
}
std::vector<Choice> Pipeline::score(const Image& image, std::string_view question, std::span<const std::string> candidates,
                                    const ScoreOptions& options) {
    return pipeline_->score(image, question, candidates, options);
}
Patches Pipeline::prepare(const Image& image, std::string_view question) const {
    return pipeline_->prepare(image, question);
}
Answer Pipeline::run(const Patches& patches, const AskOptions& options, std::string_view prompt) {
    return pipeline_->run(patches, options, prompt);
}
std::vector<Answer> Pipeline::run_batch(std::span<const Patches> patches, std::span<const std::string> prompts,
                                        int max_new_tokens) {
    return pipeline_->run_batch(patches, prompts, max_new_tokens);
}
bool Pipeline::is_vqa() const { return pipeline_->is_vqa(); }
const GenerationConfig& Pipeline::generation() const { return pipeline_->config().generation; }
int Pipeline::max_patches() const { return pipeline_->preprocess_options().max_patches; }
std::string Pipeline::describe() const { return pipeline_->describe(); }

}  // namespace pix2struct
