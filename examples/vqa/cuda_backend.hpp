// examples/vqa/cuda_backend.hpp — the pipeline of pix2struct-vqa on the GPU, made in cuda_backend.cu (nvcc).
//
// main.cpp (g++) holds the pipeline as a PipelineBase whatever the device; CMake and Meson compile
// cuda_backend.cu into pix2struct-vqa and define PIX2STRUCT_VQA_CUDA when CUDA is enabled.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "pix2struct/basic_pipeline.hpp"

namespace vqa {

// BasicPipeline<CudaBackend> (bf16 false: fp32) or BasicPipeline<CudaBackendBf16> (bf16 activations and
// weights) for the checkpoint in `dir`. Throws pix2struct::Error
// when there is no usable CUDA device or not enough free GPU memory.
std::unique_ptr<pix2struct::PipelineBase> load_cuda_pipeline(const std::filesystem::path& dir,
                                                             const pix2struct::PipelineOptions& options, bool bf16);

}  // namespace vqa
