// The public Pipeline (the API, pix2struct.hpp; its implementation is test_main.cpp's): image + question → HF's answer on the tiny checkpoint, streaming
// pieces that add up to the answer, captioning checkpoints, and the errors a user meets first.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "pix2struct/pix2struct.hpp"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";
nlohmann::json goldens() {
    std::ifstream in(kData / "goldens" / "tiny.json");
    REQUIRE(in);
    return nlohmann::json::parse(in);
}
// The last VQA case of the goldens and its image.
std::pair<nlohmann::json, Image> last_vqa_case() {
    const auto g = goldens();
    nlohmann::json vqa;
    for (const auto& c : g["pipeline"])
        if (c["is_vqa"].get<bool>()) vqa = c;
    REQUIRE(vqa.is_object());
    return {vqa, load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / vqa["image"].get<std::string>())};
}
std::vector<int64_t> without_start(const nlohmann::json& ids) {
    auto v = ids.get<std::vector<int64_t>>();
    return {v.begin() + 1, v.end()};
}
}  // namespace

TEST_CASE("pipeline: VQA answers equal HF's, streamed pieces add up to the answer") {
    const auto g = goldens();
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2, .max_patches = 0, .font_path = {}});
    CHECK(pipe.is_vqa());
    int checked = 0;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        CAPTURE(c["question"].get<std::string>());
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        std::string streamed;
        const Answer a = pipe.ask(img, c["question"].get<std::string>(),
                                  {.max_new_tokens = 0, .on_text = [&](std::string_view s) { streamed += s; return true; }});
        CHECK(a.ids == without_start(c["ids"]));
        CHECK(a.text == c["text"].get<std::string>());
        CHECK(streamed == a.text);
        CHECK(a.real_patches == c["num_real"].get<int>());
        CHECK(a.times.token_ms.size() == a.ids.size());
        ++checked;
    }
    CHECK(checked >= 3);
}

TEST_CASE("pipeline: one Pipeline asked from several threads at once gives each HF's answer") {
    const auto g = goldens();
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2, .max_patches = 0, .font_path = {}});
    std::vector<nlohmann::json> cases;
    for (const auto& c : g["pipeline"])
        if (c["is_vqa"].get<bool>()) cases.push_back(c);
    REQUIRE(cases.size() >= 2);
    constexpr int kThreads = 4, kRounds = 3;
    std::vector<std::vector<int64_t>> got(kThreads * kRounds);
    std::vector<std::string> errors(kThreads);
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                try {
                    for (int r = 0; r < kRounds; ++r) {
                        const auto& c = cases[size_t(t + r) % cases.size()];
                        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
                        got[size_t(t * kRounds + r)] = pipe.ask(img, c["question"].get<std::string>()).ids;
                    }
                } catch (const std::exception& e) {
                    errors[size_t(t)] = e.what();
                }
            });
    }
    for (int t = 0; t < kThreads; ++t) {
        CHECK(errors[size_t(t)].empty());
        for (int r = 0; r < kRounds; ++r)
            CHECK(got[size_t(t * kRounds + r)] == without_start(cases[size_t(t + r) % cases.size()]["ids"]));
    }
}

TEST_CASE("pipeline: BasicPipeline with a backend factory, used through PipelineBase, answers as HF") {
    const auto g = goldens();
    int made = 0;
    auto owned = std::make_unique<BasicPipeline<CpuBackend>>(BasicPipeline<CpuBackend>::load(
        kData / "tiny", {}, [&](const Checkpoint& c) {
            CHECK(c.config().text.num_layers > 0);
            ++made;
            return std::make_unique<CpuBackend>(1);
        }));
    CHECK(made == 1);
    PipelineBase& pipe = *owned;  // as pix2struct-vqa holds it, whatever the device
    int checked = 0;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        CAPTURE(c["question"].get<std::string>());
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        const Answer a = pipe.ask(img, c["question"].get<std::string>());
        CHECK(a.ids == without_start(c["ids"]));
        CHECK(a.text == c["text"].get<std::string>());
        ++checked;
    }
    CHECK(checked >= 3);
}

TEST_CASE("pipeline: ask_batch answers several images and questions at once, each as HF") {
    const auto g = goldens();
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2, .max_patches = 0, .font_path = {}});
    std::vector<Image> images;
    std::vector<std::string> questions;
    std::vector<nlohmann::json> cases;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        images.push_back(load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>()));
        questions.push_back(c["question"].get<std::string>());
        cases.push_back(c);
    }
    REQUIRE(cases.size() >= 3);
    const std::vector<Answer> answers = pipe.ask_batch(images, questions);
    REQUIRE(answers.size() == cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(questions[i]);
        CHECK(answers[i].ids == without_start(cases[i]["ids"]));
        CHECK(answers[i].text == cases[i]["text"].get<std::string>());
        CHECK(answers[i].real_patches == cases[i]["num_real"].get<int>());
    }
    // one question for all images, and a length limit
    const std::vector<Answer> limited = pipe.ask_batch(images, std::vector<std::string>{questions[0]}, 2);
    REQUIRE(limited.size() == images.size());
    for (const Answer& a : limited) CHECK(a.ids.size() <= 2);
    CHECK(limited[0].ids == std::vector<int64_t>(answers[0].ids.begin(), answers[0].ids.begin() + limited[0].ids.size()));
    CHECK_THROWS_WITH_AS(pipe.ask_batch(images, std::vector<std::string>{"a", "b"}), doctest::Contains("2 questions for"),
                         Error);
}

TEST_CASE("pipeline: max_new_tokens and stopping from the streaming callback") {
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 1, .max_patches = 0, .font_path = {}});
    const Image img = load_image(kData / "images" / "diagram.png");
    const Answer a = pipe.ask(img, "What is shown?", {.max_new_tokens = 3, .on_text = {}});
    CHECK(a.ids.size() == 3);
    int calls = 0;
    const Answer b = pipe.ask(img, "What is shown?", {.max_new_tokens = 0, .on_text = [&](std::string_view) { return ++calls < 2; }});
    CHECK(calls == 2);
    CHECK(b.ids.size() < 20);
}

TEST_CASE("pipeline: a captioning checkpoint (is_vqa false) takes no question") {
    const auto g = goldens();
    const fs::path dir = fs::temp_directory_path() / "p2s_tiny_captioning";
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(kData / "tiny")) fs::copy(e.path(), dir / e.path().filename());
    nlohmann::json pc;
    {
        std::ifstream in(dir / "preprocessor_config.json");
        pc = nlohmann::json::parse(in);
    }
    pc["is_vqa"] = false;
    std::ofstream(dir / "preprocessor_config.json") << pc.dump(2);
    Pipeline pipe = Pipeline::load(dir, {.threads = 2, .max_patches = 0, .font_path = {}});
    CHECK_FALSE(pipe.is_vqa());
    int checked = 0;
    for (const auto& c : g["pipeline"]) {
        if (c["is_vqa"].get<bool>()) continue;
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        const Answer a = pipe.ask(img);
        CHECK(a.ids == without_start(c["ids"]));
        CHECK(a.text == c["text"].get<std::string>());
        ++checked;
    }
    CHECK(checked == 1);
    // a question on a captioning checkpoint starts the caption (HF's conditional captioning)
    for (const auto& c : g["prompted"]) {
        if (c["min_margin"].get<double>() < g["min_margin_required"].get<double>()) continue;
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        std::string streamed;
        const Answer a = pipe.ask(img, c["prompt"].get<std::string>(),
                                  {.max_new_tokens = 0, .on_text = [&](std::string_view s) { streamed += s; return true; }});
        CHECK(a.ids == without_start(c["ids"]));
        CHECK(a.text == c["text"].get<std::string>());
        CHECK(streamed == a.text);
        ++checked;
    }
    CHECK(checked == 2);
    // both in one batch: a prompted caption and a plain one (one feeds its prompt while the other generates)
    std::vector<Image> images;
    std::vector<std::string> texts;
    std::vector<std::vector<int64_t>> expect;
    for (const auto& c : g["prompted"]) {
        if (c["min_margin"].get<double>() < g["min_margin_required"].get<double>()) continue;
        images.push_back(load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>()));
        texts.push_back(c["prompt"].get<std::string>());
        expect.push_back(without_start(c["ids"]));
    }
    for (const auto& c : g["pipeline"]) {
        if (c["is_vqa"].get<bool>()) continue;
        images.push_back(load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>()));
        texts.emplace_back();
        expect.push_back(without_start(c["ids"]));
    }
    REQUIRE(images.size() == 2);
    const std::vector<Answer> both = pipe.ask_batch(images, texts);
    REQUIRE(both.size() == 2);
    CHECK(both[0].ids == expect[0]);
    CHECK(both[1].ids == expect[1]);
    fs::remove_all(dir);
}

TEST_CASE("pipeline: errors name the model folder, the missing file, the missing question") {
    CHECK_THROWS_WITH_AS(Pipeline::load("/nonexistent-model"), doctest::Contains("/nonexistent-model"), Error);
    const fs::path dir = fs::temp_directory_path() / "p2s_incomplete_model";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy(kData / "tiny" / "config.json", dir / "config.json");
    fs::copy(kData / "tiny" / "preprocessor_config.json", dir / "preprocessor_config.json");
    CHECK_THROWS_WITH_AS(Pipeline::load(dir), doctest::Contains("model.safetensors"), Error);
    fs::copy(kData / "tiny" / "model.safetensors", dir / "model.safetensors");
    CHECK_THROWS_WITH_AS(Pipeline::load(dir), doctest::Contains("spiece.model"), Error);
    fs::remove_all(dir);

    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 1, .max_patches = 0, .font_path = {}});
    const Image img = load_image(kData / "images" / "diagram.png");
    CHECK_THROWS_WITH_AS(pipe.ask(img, ""), doctest::Contains("a question is required"), Error);
    // More patches than the model has positions: refused at load, before any work.
    CHECK_THROWS_WITH_AS(Pipeline::load(kData / "tiny", {.threads = 1, .max_patches = 1000000, .font_path = {}}),
                         doctest::Contains("vision_config.seq_len"), Error);
}

TEST_CASE("pipeline: weights read into memory (mmap off) answer as mapped ones") {
    const auto g = goldens();
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 1, .max_patches = 0, .font_path = {}, .mmap = false});
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        CHECK(pipe.ask(img, c["question"].get<std::string>()).ids == without_start(c["ids"]));
    }
}

TEST_CASE("pipeline: NaN or infinity in the weights is an error naming the token, not an answer (greedy, beams, scoring; f32 and int8)") {
    const auto [vqa, img] = last_vqa_case();
    for (const Dtype dtype : {Dtype::F32, Dtype::Int8})
    for (const char* tensor : {"decoder.final_layer_norm.weight", "decoder.layer.0.mlp.DenseReluDense.wo.weight"})
    for (const float poison : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        CAPTURE(poison);
        CAPTURE(std::string(tensor));
        CAPTURE(std::string(dtype_name(dtype)));
        // A copy of the tiny checkpoint with one element of a tensor poisoned (in int8 mode the MLP's wo is int8).
        const fs::path dir = fs::temp_directory_path() / ("p2s_nonfinite_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::copy(kData / "tiny", dir);
        {
            std::fstream f(dir / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
            uint64_t header_len = 0;
            f.read(reinterpret_cast<char*>(&header_len), 8);
            std::string header(header_len, '\0');
            f.read(header.data(), std::streamsize(header_len));
            const auto entry = nlohmann::json::parse(header)[tensor];
            REQUIRE(entry["dtype"] == "F32");
            f.seekp(std::streamoff(8 + header_len + entry["data_offsets"][0].get<uint64_t>()));
            f.write(reinterpret_cast<const char*>(&poison), sizeof poison);
            REQUIRE(f.good());
        }
        Pipeline pipe = Pipeline::load(dir, {.threads = 1, .max_patches = 0, .dtype = dtype, .font_path = {}, .mmap = false});
        const std::string question = vqa["question"].get<std::string>();
        CHECK_THROWS_WITH_AS(pipe.ask(img, question), doctest::Contains("logits of new token 1 hold NaN or infinity"), Error);
        GenerationConfig beams = pipe.generation();
        beams.num_beams = 2;
        CHECK_THROWS_WITH_AS(pipe.ask(img, question, {.generation = beams}),
                             doctest::Contains("beam search: the logits of beam 1 for new token 1 hold NaN or infinity"), Error);
        const std::vector<std::string> candidates = {"egg", "pupa"};
        CHECK_THROWS_WITH_AS(pipe.score(img, question, candidates),
                             doctest::Contains("score: the logits for token 1 of candidate "), Error);
        fs::remove_all(dir);
    }
}

TEST_CASE("pipeline: the memory budget refuses a question before allocating, naming the option") {
    const auto [vqa, img] = last_vqa_case();
    const std::string question = vqa["question"];
    using CpuPipeline = BasicPipeline<CpuBackend>;  // the model under Pipeline, to set its budget
    CpuPipeline pipe = CpuPipeline::load(kData / "tiny", {.threads = 1, .max_patches = 0, .font_path = {}});
    auto& model = pipe.model();
    CHECK(model.memory_budget() == physical_memory_bytes());
    const int64_t need = generation_bytes(model.config(), pipe.preprocess_options().max_patches, 1,
                                          model.default_max_new_tokens() + 1, sizeof(float));
    model.set_memory_budget(need);
    CHECK(pipe.ask(img, question).ids == without_start(vqa["ids"]));
    model.set_memory_budget(need - 1);
    CHECK_THROWS_WITH_AS(pipe.ask(img, question), doctest::Contains("more than the memory budget"), Error);
    // A batch of two needs more than one question's budget.
    model.set_memory_budget(need);
    const std::vector<Image> two{img, img};
    const std::vector<std::string> one_question{question};
    CHECK_THROWS_WITH_AS(pipe.ask_batch(two, one_question), doctest::Contains("PipelineOptions::max_memory_bytes"), Error);
    // A length whose self-attention cache would not fit in memory: refused, not allocated.
    model.set_memory_budget(0);
    CHECK_THROWS_WITH_AS(pipe.ask(img, question, {.max_new_tokens = 2'000'000'000}),
                         doctest::Contains("more than the memory budget"), Error);
    // At load: one question of max_patches over the budget.
    const PipelineOptions tight{.threads = 1, .max_patches = 0, .font_path = {}, .mmap = true, .max_memory_bytes = need - 1};
    CHECK_THROWS_WITH_AS(Pipeline::load(kData / "tiny", tight), doctest::Contains("--max-memory-mb"), Error);
    CHECK(CpuPipeline::load(kData / "tiny", {.max_memory_bytes = need}).model().memory_budget() == need);
}

TEST_CASE("pipeline: Dtype::Int8 runs CpuInt8Backend: the model's int8 answers, describe() names the kernels") {
    const auto g = goldens();
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2, .dtype = Dtype::Int8});
    CHECK_MESSAGE(pipe.describe().find(std::string("int8 kernels ") + isa_name(host_int8_isa())) != std::string::npos,
                  pipe.describe());
    // the same model on its own (test_model checks its accuracy against HF)
    const Checkpoint ckpt = Checkpoint::load(kData / "tiny");
    CpuInt8Backend backend(ckpt, CpuOptions{.threads = 2});
    ForConditionalGeneration<CpuInt8Backend> model(ckpt, backend);
    int checked = 0;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        const Patches p = pipe.prepare(img, c["question"].get<std::string>());
        const Answer a = pipe.run(p);
        CHECK(a.ids == model.generate(p.flattened, p.mask).ids);
        ++checked;
    }
    CHECK(checked >= 3);
    // BasicPipeline without a backend factory would make an fp32 backend: it refuses instead
    CHECK_THROWS_WITH_AS(BasicPipeline<CpuBackend>::load(kData / "tiny", {.dtype = Dtype::Int8}),
                         doctest::Contains("PipelineOptions::dtype int8"), Error);
}

// Dtype::Bf16 through Pipeline::load: the answers of HF run in bfloat16 (tests/reference/make_bf16_goldens.py)
// for the pipeline cases whose top-1 margins are clear, one by one and as a batch.
TEST_CASE("pipeline: Dtype::Bf16 runs CpuBf16Backend: HF bfloat16's answers, describe() says bf16") {
    std::ifstream in(kData / "goldens" / "tiny-bf16-act.json");
    REQUIRE(in);
    const nlohmann::json g = nlohmann::json::parse(in);
    REQUIRE(g["activations"] == "bfloat16");
    const double min_margin = g["min_margin_required"].get<double>();
    for (const char* model : {"tiny-bf16", "tiny"}) {  // the F32 file's weights are rounded as HF rounds them
        const std::string label = model;
        CAPTURE(label);
        Pipeline pipe = Pipeline::load(kData / model, {.threads = 2, .dtype = Dtype::Bf16});
        CHECK_MESSAGE(pipe.describe().find("bf16") != std::string::npos, pipe.describe());
        std::vector<Image> images;
        std::vector<std::string> questions;
        std::vector<std::vector<int64_t>> expect;
        for (const auto& c : g["pipeline"]) {
            if (!c["is_vqa"].get<bool>() || c["min_margin"].get<double>() < min_margin) continue;
            images.push_back(load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>()));
            questions.push_back(c["question"].get<std::string>());
            expect.push_back(without_start(c["ids"]));
            const Answer a = pipe.ask(images.back(), questions.back());
            CHECK(a.ids == expect.back());
            CHECK(a.text == c["text"].get<std::string>());
        }
        CHECK(expect.size() >= 1);
        const std::vector<Answer> batch = pipe.ask_batch(images, questions);
        REQUIRE(batch.size() == expect.size());
        for (size_t i = 0; i < expect.size(); ++i) CHECK(batch[i].ids == expect[i]);
    }
}
