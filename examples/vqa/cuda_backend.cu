// examples/vqa/cuda_backend.cu — pix2struct-vqa --device cuda: the pipeline on CudaBackend (fp32) or
// CudaBackendBf16 (--dtype bf16), synchronous (ForConditionalGeneration::generate reads each step's chosen
// tokens on the host).
#include "examples/vqa/cuda_backend.hpp"

#include "pix2struct/backend/cuda.hpp"

namespace vqa {

namespace {
template <class Backend>
std::unique_ptr<pix2struct::PipelineBase> load(const std::filesystem::path& dir, const pix2struct::PipelineOptions& options) {
    using GpuPipeline = pix2struct::BasicPipeline<Backend>;
    return std::make_unique<GpuPipeline>(GpuPipeline::load(dir, options));
}
}  // namespace

std::unique_ptr<pix2struct::PipelineBase> load_cuda_pipeline(const std::filesystem::path& dir,
                                                             const pix2struct::PipelineOptions& options, bool bf16) {
    return bf16 ? load<pix2struct::CudaBackendBf16>(dir, options) : load<pix2struct::CudaBackend>(dir, options);
}

}  // namespace vqa
