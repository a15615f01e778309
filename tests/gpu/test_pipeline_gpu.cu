// tests/gpu/test_pipeline_gpu.cu — BasicPipeline<CudaBackend> (what pix2struct-vqa --device cuda runs): image +
// question → the ids and text HF's processor + generate give on the tiny VQA checkpoint, for the golden
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

TEST_CASE("gpu pipeline: VQA answers on CudaBackend equal HF's") {
    SKIP_WITHOUT_GPU();
    std::ifstream in(kData / "goldens" / "tiny.json");
    REQUIRE(in);
    const nlohmann::json g = nlohmann::json::parse(in);
    const double min_margin = g["min_margin_required"].get<double>();
    GpuPipeline pipe = GpuPipeline::load(kData / "tiny");
    REQUIRE(pipe.is_vqa());
    int checked = 0;
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
        ++checked;
    }
    MESSAGE(checked, " pipeline cases on ", pipe.backend().device_name());
    CHECK(checked >= 1);
}
