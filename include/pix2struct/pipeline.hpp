// pix2struct/pipeline.hpp — image (+ question) → answer text: checkpoint, tokenizer, preprocessing, model.
//
//   auto p = pix2struct::Pipeline::load("pix2struct-ai2d-base/", {.threads = 2});   // throws pix2struct::Error
//   pix2struct::Answer a = p.ask(pix2struct::load_image("diagram.png"), "What is the next stage?");
//   a.text, a.ids, a.times
//
// The CPU backend (fp32) runs the model; preprocessing uses the checkpoint's preprocessor_config.json
// (max_patches, patch size, is_vqa) unless PipelineOptions override it. A VQA checkpoint (is_vqa) needs a
// question (it is drawn on the image as a header); a captioning checkpoint takes none.
// Pipeline is BasicPipeline<CpuBackend> (pix2struct/basic_pipeline.hpp, which also runs other backends,
// e.g. BasicPipeline<CudaBackend> from a .cu file, without this header's Eigen).
#pragma once

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/basic_pipeline.hpp"

namespace pix2struct {

using Pipeline = BasicPipeline<CpuBackend>;

}  // namespace pix2struct
