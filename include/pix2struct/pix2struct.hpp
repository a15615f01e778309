// pix2struct.hpp — Pix2Struct (Google's screenshot/diagram → text model) in header-only C++20.
//
// A reproduction of Hugging Face transformers' Pix2StructForConditionalGeneration (4.57.6) and its
// Pix2StructProcessor: the same tensors in, the same token ids out. CPU backend on Eigen (fp32 math,
// F32/F16/BF16 checkpoint files); a CUDA backend plugs into the same model templates.
//
// USAGE
//
//     #include <pix2struct/pix2struct.hpp>
//
//     auto pipe = pix2struct::Pipeline::load("pix2struct-ai2d-base/", {.threads = 2});
//     auto image = pix2struct::load_image("diagram.png");
//     pix2struct::Answer a = pipe.ask(image, "What stage comes after the larva?",
//                                     {.on_text = [](std::string_view s) { std::cout << s << std::flush; return true; }});
//     std::cout << a.text << "\n";            // also a.ids, a.times
//
// Link: the CMake target pix2struct::pix2struct (Eigen, nlohmann_json, sentencepiece, stb, libjpeg-turbo,
// libpng, giflib, libwebp, FreeType when found, Threads).
//
// ENTRY POINTS (all throw pix2struct::Error, a std::runtime_error whose message names the input and the
// problem: missing/incomplete model folder, mis-shaped tensor, unreadable image, missing question…)
//
//   Pipeline::load(dir, PipelineOptions)      → Pipeline   checkpoint + tokenizer + CPU backend, ready to ask
//   Pipeline::ask(image, question, AskOptions) → Answer     text, ids (without the start token), timings
//   Pipeline::prepare(image, question)         → Patches    the model input (flattened patches + mask)
//   Pipeline::run(patches, AskOptions)         → Answer     encode + decode prepared patches
//   load_image(path) / load_image_from_memory  → Image      8-bit RGB as Pillow's convert("RGB") gives
//   preprocess(image, question, options)       → Patches    Pix2StructImageProcessor (header, normalize, patches)
//   Checkpoint::load(dir)                      → Checkpoint config + weights bound by their HF names
//   Tokenizer::load(dir)                       → Tokenizer  decode(ids) == HF decode(skip_special_tokens=True)
//   ForConditionalGeneration<Backend>(checkpoint, backend)
//       .encode(flattened, mask) → rows   .compute_cross_kv()   .begin(n) / .step(token) → logits
//       .forward(flattened, mask, decoder_ids) → logits [T, V]   .generate(flattened, mask, options) → GenerateResult
//
// LAYOUT (one header per concept; model code reads leaf to root, one struct per reference module)
//   config.hpp safetensors.hpp weights.hpp tokenizer.hpp pipeline.hpp (basic_pipeline.hpp: any backend)
//   image/    image, load (codecs/: jpeg png gif webp bmp), resample, header, patches  (Pix2StructImageProcessor)
//   nn/       rms_norm, mlp, attention, relative_position (Pix2StructLayerNorm, …Mlp, …Attention)
//   model/    vision_encoder, text_decoder, kv_cache, generate
//   backend/  backend (the primitives a backend supplies), cpu (Eigen)
#pragma once

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/patches.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/pipeline.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/tokenizer.hpp"
#include "pix2struct/weights.hpp"
