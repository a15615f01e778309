// tests/gpu/test_pipeline_gpu.cu — BasicPipeline<CudaBackend> and <CudaBackendBf16> (what pix2struct-vqa
// --device cuda --dtype f32|bf16 runs): image + question → the ids and text HF's processor + generate give on
// the tiny VQA checkpoint (fp32, and in bfloat16 for the bf16 path), one by one and as a batch, for the golden
// pipeline cases whose smallest top-1 margin is clear (min_margin_required; the GPU sums in another order).
// Without a CUDA device: loading fails with a clear pix2struct::Error, and the test prints
// "SKIPPED: no CUDA device".
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2struct/backend/cuda.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "tests/gpu/gpu_test.cuh"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";
using GpuPipeline = BasicPipeline<CudaBackend>;
}  // namespace

TEST_CASE("gpu pipeline: without a CUDA device, loading fails with a clear error") {
    if (p2s_test::has_cuda_device()) return;  // the next case covers the device
    CHECK_THROWS_WITH_AS(GpuPipeline::load(kData / "tiny"), doctest::Contains("no CUDA device"), Error);
    std::printf("SKIPPED: no CUDA device\n");
}

// The golden pipeline cases of `golden` (tests/data/models/goldens/<golden>.json) answered one by one and as
// one batch by BasicPipeline<Backend> on the checkpoint in `model`.
template <class Backend>
void check_pipeline(const std::string& model, const std::string& golden) {
    std::ifstream in(kData / "goldens" / (golden + ".json"));
    REQUIRE(in);
    const nlohmann::json g = nlohmann::json::parse(in);
    const double min_margin = g["min_margin_required"].get<double>();
    BasicPipeline<Backend> pipe = BasicPipeline<Backend>::load(kData / model);
    REQUIRE(pipe.is_vqa());
    std::vector<Image> images;
    std::vector<std::string> questions;
    std::vector<std::vector<int64_t>> expect;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>() || c["min_margin"].get<double>() < min_margin) continue;
        CAPTURE(c["question"].get<std::string>());
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        std::string streamed;
        const Answer a = pipe.ask(img, c["question"].get<std::string>(),
                                  {.max_new_tokens = 0, .on_text = [&](std::string_view s) { streamed += s; return true; }});
        auto ids = c["ids"].get<std::vector<int64_t>>();
        ids.erase(ids.begin());  // the start token
        CHECK(a.ids == ids);
        CHECK(a.text == c["text"].get<std::string>());
        CHECK(streamed == a.text);
        CHECK(a.real_patches == c["num_real"].get<int>());
        images.push_back(img);
        questions.push_back(c["question"].get<std::string>());
        expect.push_back(ids);
    }
    const std::vector<Answer> batch = pipe.ask_batch(images, questions);
    REQUIRE(batch.size() == expect.size());
    for (size_t i = 0; i < expect.size(); ++i) CHECK(batch[i].ids == expect[i]);
    MESSAGE(expect.size(), " pipeline cases (", golden, ") on ", pipe.backend().device_name());
    std::printf("gpu pipeline %s: %zu cases one by one and batched\n", golden.c_str(), expect.size());
    CHECK(expect.size() >= 1);
}

TEST_CASE("gpu pipeline: VQA answers on CudaBackend equal HF's") {
    SKIP_WITHOUT_GPU();
    check_pipeline<CudaBackend>("tiny", "tiny");
}

TEST_CASE("gpu pipeline: VQA answers on CudaBackendBf16 equal HF's in bfloat16") {
    SKIP_WITHOUT_GPU();
    check_pipeline<CudaBackendBf16>("tiny-bf16", "tiny-bf16-act");
}
