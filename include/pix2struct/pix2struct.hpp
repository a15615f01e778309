// pix2struct.hpp — Pix2Struct (Google's screenshot/diagram → text model) in header-only C++20.
//
// A reproduction of Hugging Face transformers' Pix2StructForConditionalGeneration (4.57.6) and its
// Pix2StructProcessor: the same tensors in, the same token ids out. CPU backend on kernels of our own chosen
// at run time (fp32 math, F32/F16/BF16 checkpoint files); a CUDA backend plugs into the same model templates.
//
// USAGE — stb's convention: every file includes the API; exactly one file of the program defines
// PIX2STRUCT_IMPLEMENTATION first, and compiles the implementation (Eigen, the codecs, the model) once.
//
//     #define PIX2STRUCT_IMPLEMENTATION      // in one .cpp file only
//     #include <pix2struct/pix2struct.hpp>
//
//     auto pipe = pix2struct::Pipeline::load("pix2struct-ai2d-base/", {.threads = 2});
//     auto image = pix2struct::load_image("diagram.png");
//     pix2struct::Answer a = pipe.ask(image, "What stage comes after the larva?",
//                                     {.on_text = [](std::string_view s) { std::cout << s << std::flush; return true; }});
//     std::cout << a.text << "\n";            // also a.ids, a.times
//
// Link: the CMake target pix2struct::pix2struct, pkg-config's pix2struct, or meson's pix2struct_dep
// (Eigen, nlohmann_json, sentencepiece, stb, libjpeg-turbo, libpng, giflib, libwebp, FreeType when found,
// Threads). No library of ours: the implementation file is the app's own.
//
// ENTRY POINTS of the API (all throw pix2struct::Error, a std::runtime_error whose message names the input
// and the problem: missing/incomplete model folder, mis-shaped tensor, unreadable image, missing question…)
//
//   Pipeline::load(dir, PipelineOptions)      → Pipeline   checkpoint + tokenizer + CPU backend, ready to ask
//   Pipeline::ask(image, question, AskOptions) → Answer     text, ids (without the start token), timings; beams
//                                                          (AskOptions::generation), cross-attention
//   Pipeline::score(image, question, candidates) → Choices   each candidate answer's log-likelihood
//   Pipeline::ask_batch(images, questions)     → Answers    one encoder pass, shared decode steps
//   Pipeline::prepare(image, question)         → Patches    the model input (flattened patches + mask)
//   Pipeline::run(patches, AskOptions)         → Answer     encode + decode prepared patches
//   Batcher(pipeline).submit(patches)          → future<Answer>   many callers, continuous batching (batcher.hpp)
//   load_image(path) / load_image_from_memory  → Image      8-bit RGB as Pillow's convert("RGB") gives
// Below the API, inline templates any file may include (they compile the heavy parts where included):
//   Checkpoint::load(dir) (weights.hpp), Tokenizer::load(dir) (tokenizer.hpp), preprocess (image/patches.hpp),
//   ForConditionalGeneration<Backend>(checkpoint, backend) (model/generate.hpp)
//       .encode(flattened, mask) → rows   .compute_cross_kv()   .begin(n) / .step(token) → logits
//       .forward(flattened, mask, decoder_ids) → logits [T, V]   .generate(flattened, mask, options) → GenerateResult
//       .score(flattened, mask, prefix, candidates) → log-probabilities per candidate token
//   BasicPipeline<Backend> (basic_pipeline.hpp): the pipeline on any backend, e.g. CudaBackend
//
// LAYOUT — every header, in the order data flows (docs/ARCHITECTURE.md; tests/test_layout.cpp keeps this
// list and the files equal). Paths below include/pix2struct/; the CUDA kernels are in kernels/, included (and
// installed) as pix2struct/kernels/.
//   version.hpp                   PIX2STRUCT_VERSION
//   error.hpp                     Error, the one exception type; detail::fail
//   read_file.hpp                 bounded whole-file reads (images, fonts, weights)
//   memory.hpp                    physical_memory_bytes: the default of the memory budgets
//   generation_config.hpp         GenerationConfig (how generate() decodes), CrossAttention (what it records)
//   config.hpp                    config.json, preprocessor_config.json, generation_config.json, validated
//   safetensors.hpp               the file format: reader (mmap or memory), writer
//   weights.hpp                   Checkpoint: config + every tensor bound by its transformers name
//   random_checkpoint.hpp         random-weight checkpoints of any shape (tests, benchmarks)
//   tokenizer.hpp                 SentencePiece as transformers' T5 tokenizer (decode, encode)
//   hub.hpp                       checkpoints by name: the Hugging Face cache, downloads into it (libcurl)
//   image/image.hpp               Image, ImageLimits, Patches, load_image (declared)
//   image/load.hpp                decode_image (behind load_image): format by signature, then one codec
//   image/codecs/jpeg.hpp image/codecs/png.hpp image/codecs/gif.hpp image/codecs/webp.hpp image/codecs/bmp.hpp
//   image/font.hpp                the header font (stb_truetype, FreeType when built with it)
//   image/detail/sfnt_check.hpp   a font's structure checked before stb_truetype reads it
//   image/detail/liberation_sans_36.hpp image/detail/liberation_sans_36_outlines.hpp   FreeType's hinted metrics
//   image/text_wrap.hpp           textwrap's line breaking, UTF-8
//   image/text_layout.hpp         Pillow's text layout (raqm advances, kerning, boxes)
//   image/glyph_raster.hpp        one glyph's coverage as FreeType draws it
//   image/header.hpp              render_text / render_header: the question above the image
//   image/resample.hpp            Pillow's bicubic resize
//   image/patches.hpp             preprocess: Pix2StructImageProcessor (normalize, resize, patches)
//   image/attention_map.hpp       cross-attention weights drawn over the model's input picture
//   backend/attention_args.hpp    AttentionArgs: one attention call, for backends and kernels alike
//   backend/backend.hpp           the Backend concept: the primitives the model calls
//   backend/cpu.hpp               CpuBackend: the primitives on our kernels (Eigen without AVX2), ThreadPool;
//                                 CpuInt8Backend: int8 mode with int8 cross-attention K/V;
//                                 CpuBf16Backend: bf16 mode (what CudaBackendBf16 computes)
//   backend/thread_pool.hpp       the CPU backend's pool of threads
//   backend/cpu_isa.hpp           CpuIsa, Int8Isa: the SIMD kernels this CPU runs, chosen at run time
//   backend/cpu_kernels.hpp       SGEMM, softmax, GEMV for AVX-512 and AVX2 (target attributes)
//   backend/cpu_int8.hpp          int8 weights packed at load, activations quantised per row, VNNI/AVX2 GEMM
//   backend/cpu_bf16.hpp          bf16 weights packed at load, AVX512-BF16 GEMM (the bf16 mode on AMD)
//   backend/cuda.hpp              CudaBackend, CudaBackendBf16 (nvcc only)
//   nn/rms_norm.hpp nn/mlp.hpp nn/attention.hpp nn/relative_position.hpp   one struct per reference module
//   nn/position_bucket.hpp        T5's relative-position bucket (host and device)
//   model/vision_encoder.hpp      Pix2StructVisionModel
//   model/kv_cache.hpp            the decoder's self and cross K/V caches
//   model/text_decoder.hpp        Pix2StructTextModel: one decode step
//   model/generate.hpp            ForConditionalGeneration: encode, cross K/V, greedy decoding, batches,
//                                 beam search, teacher-forced scoring
//   model/continuous.hpp          ContinuousBatch: sequences join and leave a running batch between steps
//   basic_pipeline.hpp            PipelineBase, BasicPipeline<Backend>: image + question → Answer
//   batcher.hpp                   Batcher: questions from any thread answered with continuous batching
//   choices.hpp                   parse_choices: the options of a multiple-choice question
//   metrics.hpp                   exact match, relaxed accuracy (ChartQA), ANLS (DocVQA): answers against golds
//   pipeline.hpp                  the API: Pipeline, PipelineOptions, AskOptions, Answer, Choice
//   implementation.hpp            the API's definitions (with PIX2STRUCT_IMPLEMENTATION)
//   pix2struct.hpp                this header: the API, and the implementation where asked for
//   kernels/common.cuh kernels/geometry.hpp kernels/matmul.cuh kernels/attention.cuh kernels/rms_norm.cuh
//   kernels/embed.cuh             the CUDA kernels behind backend/cuda.hpp
#pragma once

#include "pix2struct/error.hpp"
#include "pix2struct/image/image.hpp"
#include "pix2struct/pipeline.hpp"
#include "pix2struct/version.hpp"

#ifdef PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/implementation.hpp"
#endif
