// Continuous batching (model/continuous.hpp, batcher.hpp): sequences that join a running batch between steps,
// at other positions than those already decoding, give HF's answers (the tiny checkpoint's goldens) and the
// answers ask() gives alone; questions from many threads at staggered times are each answered once, as
// ask() answers them; queue limits, deadlines, stopping from the stream and shutdown.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "pix2struct/batcher.hpp"
#include "pix2struct/pix2struct.hpp"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";

struct Case {
    Patches patches;
    std::vector<int64_t> ids;  // HF's, without the start token
};
// The goldens' VQA cases (HF's ids) prepared by `pipe`.
std::vector<Case> vqa_cases(const PipelineBase& pipe) {
    std::ifstream in(kData / "goldens" / "tiny.json");
    REQUIRE(in);
    const nlohmann::json g = nlohmann::json::parse(in);
    std::vector<Case> cases;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        const Image img = load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
        auto ids = c["ids"].get<std::vector<int64_t>>();
        cases.push_back({pipe.prepare(img, c["question"].get<std::string>()), {ids.begin() + 1, ids.end()}});
    }
    REQUIRE(cases.size() == 3);
    return cases;
}
}  // namespace

TEST_CASE("continuous batch: sequences admitted between steps, at other positions, decode as HF (and a freed slot is reused)") {
    auto pipe = BasicPipeline<CpuBackend>::load(kData / "tiny", {.threads = 2});
    const std::vector<Case> cases = vqa_cases(pipe);
    // room for two sequences and the rows of two images: the third waits for a slot
    ContinuousBatch<CpuBackend> batch(pipe.model(), {.sequences = 2, .positions = 21, .rows = 2 * pipe.preprocess_options().max_patches});
    std::map<int64_t, size_t> case_of;  // sequence → case
    std::map<size_t, std::vector<int64_t>> got;
    auto admit = [&](size_t c) {
        const PatchInput image{cases[c].patches.flattened, cases[c].patches.mask};
        const GenerateOptions options{};
        const std::vector<int64_t> ids = batch.admit({&image, 1}, {&options, 1});
        REQUIRE(ids.size() == 1);
        case_of[ids[0]] = c;
    };
    admit(0);
    size_t steps = 0, next = 1;
    bool mixed = false;
    while (batch.running() > 0 || next < cases.size()) {
        // case 1 joins after 2 steps of case 0 (they then decode at different positions); case 2 when a slot frees
        if (next < cases.size() && steps >= 2 && batch.free_sequences() > 0) {
            const int64_t rows = real_patches(cases[next].patches.mask);
            REQUIRE(batch.fits({&rows, 1}));
            admit(next++);
        }
        const int64_t running = batch.running();
        mixed = mixed || running > 1;
        for (const ContinuousToken& t : batch.step()) {
            got[case_of.at(t.sequence)].push_back(t.token);
            if (t.done) CHECK(batch.running() < running);
        }
        ++steps;
        REQUIRE(steps < 200);
    }
    CHECK(mixed);
    for (size_t c = 0; c < cases.size(); ++c) {
        CAPTURE(c);
        CHECK(got[c] == cases[c].ids);
    }
    // a third sequence does not fit beside two: fits() says so and admit() refuses with a message
    const int64_t rows = real_patches(cases[0].patches.mask);
    const std::vector<int64_t> three(3, rows);
    CHECK_FALSE(batch.fits(three));
    std::vector<PatchInput> images(3, PatchInput{cases[0].patches.flattened, cases[0].patches.mask});
    const GenerateOptions options{};
    CHECK_THROWS_WITH(batch.admit(images, {&options, 1}), doctest::Contains("no room for 3 more sequence(s)"));
}

TEST_CASE("batcher: questions from 32 threads at staggered times are each answered once, as ask() answers them alone") {
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2});
    const std::vector<std::string> images = {"diagram.png", "tall.png"};
    const std::vector<std::string> questions = {"What is shown?", "Which stage comes after the larva?",
                                                "What eats the plant?", "How many legs?"};
    std::vector<Patches> inputs;
    std::vector<Answer> alone;
    for (int i = 0; i < 32; ++i) {
        const Image img = load_image(kData / "images" / images[size_t(i) % 2]);
        std::string q = questions[size_t(i / 2) % questions.size()];
        if (i >= 8) q.append(" ").append(std::to_string(i));  // (not `+`: GCC 12's -Wrestrict false positive)
        inputs.push_back(pipe.prepare(img, q));
        alone.push_back(pipe.run(inputs.back(), {.max_new_tokens = 1 + i % 20}));
    }
    for (const int n : {1, 8, 32}) {
        CAPTURE(n);
        Batcher batcher(pipe, {.sequences = 8, .rows = 0, .max_new_tokens = 0, .max_queue = 64});
        std::vector<std::future<Answer>> futures(static_cast<size_t>(n));
        std::vector<std::thread> clients;
        for (int c = 0; c < n; ++c)
            clients.emplace_back([&, c] {
                std::this_thread::sleep_for(std::chrono::milliseconds(3 * (c % 7)));  // arrivals while others decode
                futures[size_t(c)] = batcher.submit(inputs[size_t(c)], {.max_new_tokens = 1 + c % 20});
            });
        for (std::thread& t : clients) t.join();
        for (int c = 0; c < n; ++c) {
            CAPTURE(c);
            const Answer a = futures[size_t(c)].get();
            CHECK(a.ids == alone[size_t(c)].ids);
            CHECK(a.text == alone[size_t(c)].text);
            CHECK(a.times.token_ms.size() == a.ids.size());
        }
        const Batcher::Stats s = batcher.stats();
        CHECK(s.answered == n);
        CHECK(s.failed == 0);
    }
}

TEST_CASE("batcher: a full queue refuses, a deadline fails the question, on_text stops it, shutdown answers what it took") {
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2});
    const Patches p = pipe.prepare(load_image(kData / "images" / "diagram.png"), "What is shown?");
    const Answer alone = pipe.run(p);
    REQUIRE(alone.ids.size() > 3);
    {
        Batcher batcher(pipe, {.sequences = 1, .rows = 0, .max_new_tokens = 0, .max_queue = 2});
        std::vector<std::future<Answer>> futures;
        int refused = 0;
        for (int i = 0; i < 8; ++i) {
            try {
                futures.push_back(batcher.submit(p));
            } catch (const BatcherFull& e) {
                CHECK(std::string(e.what()).find("max_queue") != std::string::npos);
                ++refused;
            }
        }
        CHECK(refused > 0);
        batcher.shutdown();  // what was taken is answered
        for (auto& f : futures) CHECK(f.get().ids == alone.ids);
        CHECK_THROWS_AS(batcher.submit(p), BatcherFull);
    }
    Batcher batcher(pipe, {.sequences = 2});
    auto late = batcher.submit(p, {.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1)});
    CHECK_THROWS_AS(late.get(), BatcherTimeout);
    std::string streamed;
    auto stopped = batcher.submit(p, {.on_text = [&](std::string_view piece) {
        streamed += piece;
        return false;
    }});
    const Answer a = stopped.get();
    CHECK(a.ids.size() < alone.ids.size());
    CHECK(a.ids == std::vector<int64_t>(alone.ids.begin(), alone.ids.begin() + int64_t(a.ids.size())));
    CHECK(a.text == streamed);
    CHECK_THROWS_WITH(batcher.submit(p, {.max_new_tokens = 100}), doctest::Contains("max_new_tokens 100 is outside"));
    std::string whole;
    auto all = batcher.submit(p, {.on_text = [&](std::string_view piece) {
        whole += piece;
        return true;
    }});
    CHECK(all.get().ids == alone.ids);
    CHECK(whole == alone.text);  // the last token's piece too
}
