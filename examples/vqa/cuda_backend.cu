// examples/vqa/cuda_backend.cu — pix2struct-vqa --device cuda: the pipeline on CudaBackend (fp32, synchronous:
// ForConditionalGeneration::generate reads the logits' argmax on the host between primitives).
#include "examples/vqa/cuda_backend.hpp"

#include "pix2struct/backend/cuda.hpp"

namespace vqa {

std::unique_ptr<pix2struct::PipelineBase> load_cuda_pipeline(const std::filesystem::path& dir,
                                                             const pix2struct::PipelineOptions& options,
                                                             std::string& device_name) {
    using GpuPipeline = pix2struct::BasicPipeline<pix2struct::CudaBackend>;
    auto pipe = std::make_unique<GpuPipeline>(GpuPipeline::load(dir, options));
    device_name = pipe->backend().device_name();
    return pipe;
}

}  // namespace vqa
