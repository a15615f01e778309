// pix2struct-vqa's decoding options end to end (the program run as a user runs it), against the reference's
// numbers in goldens/decoding.json and goldens/tiny.json: --choices auto, beam search, questions on stdin,
// --attention-map; and every program's --version.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "model_goldens.hpp"
#include "programs.hpp"
#include "pix2struct/pix2struct.hpp"

namespace fs = std::filesystem;

namespace {
using p2s_test::quoted, p2s_test::read_json, p2s_test::run;
const fs::path kModels = fs::path(PIX2STRUCT_TEST_DATA) / "models";
const fs::path kVqa = p2s_test::program("pix2struct-vqa");

std::string vqa(const std::string& args) {
    return kVqa.string() + " --threads 2 --model " + quoted((kModels / "tiny").string()) + " " + args;
}
}  // namespace

TEST_CASE("pix2struct-vqa --choices auto --json: the options of the question, scored as the reference scores them") {
    REQUIRE(fs::exists(kVqa));
    const auto g = read_json(kModels / "goldens" / "decoding.json");
    const std::string image = (kModels / "images" / g["image"].get<std::string>()).string();
    int status = 0;
    const std::string out = run(vqa("--image " + quoted(image) + " --question " + quoted(g["question"].get<std::string>()) +
                                    " --choices auto --json"), status);
    REQUIRE(status == 0);
    const auto j = nlohmann::json::parse(out);
    // the question lists 4 options; the golden scored them (and a 5th, not in the question)
    REQUIRE(j["choices"].size() == 4);
    std::string best;
    double best_lp = -1e300;
    for (size_t c = 0; c < 4; ++c) {
        const auto& want = g["scoring"][c];
        double sum = 0;
        for (double x : want["logprobs"]) sum += x;
        CHECK(j["choices"][c]["text"] == want["text"]);
        CHECK(std::abs(j["choices"][c]["logprob"].get<double>() - sum) <= p2s_test::logprob_tolerance(want["logprobs"].size()));
        if (sum > best_lp) best_lp = sum, best = want["text"].get<std::string>();
    }
    CHECK(j["answer"] == best);

    // a question without options
    run(vqa("--image " + quoted(image) + " --question 'What is shown?' --choices auto 2>/dev/null"), status);
    CHECK(status != 0);
}

TEST_CASE("pix2struct-vqa --num-beams …: the reference's beams and scores") {
    const auto g = read_json(kModels / "goldens" / "decoding.json");
    const std::string image = (kModels / "images" / g["image"].get<std::string>()).string();
    const auto& c = g["beams"][1];  // num_beams 4, max_new_tokens 10, length_penalty 0.6, early_stopping true, 2 returned
    REQUIRE(c["kwargs"]["num_beams"] == 4);
    REQUIRE(c["kwargs"]["early_stopping"] == true);
    int status = 0;
    const std::string out =
        run(vqa("--image " + quoted(image) + " --question " + quoted(g["question"].get<std::string>()) +
                " --num-beams 4 --max-new-tokens 10 --length-penalty 0.6 --early-stopping true --num-return-sequences 2 --json"),
            status);
    REQUIRE(status == 0);
    const auto j = nlohmann::json::parse(out);
    REQUIRE(j["sequences"].size() == 2);
    for (size_t i = 0; i < 2; ++i) {
        CHECK(j["sequences"][i]["ids"] == c["sequences"][i]["ids"]);
        const double score = c["sequences"][i]["score"].get<double>();
        CHECK(std::abs(j["sequences"][i]["score"].get<double>() - score) <= p2s_test::beam_score_tolerance(score));
    }
    CHECK(j["ids"] == c["sequences"][0]["ids"]);
}

TEST_CASE("pix2struct-vqa with questions on stdin: one answer per line, each the reference's") {
    const auto g = read_json(kModels / "goldens" / "tiny.json");
    std::vector<nlohmann::json> cases;
    for (const auto& c : g["pipeline"])
        if (c["is_vqa"].get<bool>() && (cases.empty() || c["image"] == cases[0]["image"])) cases.push_back(c);
    REQUIRE(cases.size() >= 2);
    std::string lines;
    for (const auto& c : cases) lines += c["question"].get<std::string>() + "\n";
    const fs::path input = fs::temp_directory_path() / ("p2s_questions_" + std::to_string(::getpid()));
    std::ofstream(input) << lines;
    int status = 0;
    const std::string out = run(vqa("--image " + quoted((fs::path(PIX2STRUCT_SOURCE_DIR) / cases[0]["image"].get<std::string>()).string()) +
                                    " --interactive --json < " + quoted(input.string())), status);
    fs::remove(input);
    REQUIRE(status == 0);
    std::istringstream in(out);
    std::string line;
    size_t i = 0;
    for (; std::getline(in, line); ++i) {
        REQUIRE(i < cases.size());
        const auto j = nlohmann::json::parse(line);
        const std::vector<int64_t> ids = cases[i]["ids"].get<std::vector<int64_t>>();
        CHECK(j["question"] == cases[i]["question"]);
        CHECK(j["ids"].get<std::vector<int64_t>>() == std::vector<int64_t>(ids.begin() + 1, ids.end()));
    }
    CHECK(i == cases.size());
}

TEST_CASE("pix2struct-vqa --attention-map writes the picture the model saw with the heat over it") {
    const auto g = read_json(kModels / "goldens" / "decoding.json");
    const std::string image = (kModels / "images" / g["image"].get<std::string>()).string();
    const fs::path map = fs::temp_directory_path() / ("p2s_map_" + std::to_string(::getpid()) + ".png");
    int status = 0;
    run(vqa("--image " + quoted(image) + " --question 'What?' --max-new-tokens 3 --attention-map " + quoted(map.string()) +
            " --attention-per-token 2>/dev/null"), status);
    REQUIRE(status == 0);
    auto pipe = pix2struct::Pipeline::load(kModels / "tiny");
    const pix2struct::Patches p = pipe.prepare(pix2struct::load_image(image), "What?");
    const pix2struct::Image png = pix2struct::load_image(map);
    // 3 tokens: panels in a 2 × 2 grid with 4-pixel gaps
    CHECK(png.width == 2 * p.cols * 16 + 4);
    CHECK(png.height == 2 * p.rows * 16 + 4);
    fs::remove(map);
    run(vqa("--image " + quoted(image) + " --question 'What?' --num-beams 2 --attention-map x.png 2>/dev/null"), status);
    CHECK(status != 0);
}

TEST_CASE("every program says its version: --version prints \"pix2struct <version>\" and exits 0") {
    int programs = 0;
    for (const auto& e : fs::directory_iterator(fs::path(PIX2STRUCT_SOURCE_DIR) / "examples")) {
        if (!fs::exists(e.path() / "main.cpp")) continue;
        const std::string name = "pix2struct-" + e.path().filename().string();
        CAPTURE(name);
        int status = -1;
        const std::string out = run(quoted(p2s_test::program(name).string()) + " --version", status);
        CHECK(status == 0);
        CHECK(out == std::string("pix2struct ") + PIX2STRUCT_VERSION + "\n");
        ++programs;
    }
    CHECK(programs >= 4);  // vqa, run, server, make_random_checkpoint
}

TEST_CASE("--model owner/name --offline with an empty Hugging Face cache: a one-line error naming the repo, no network") {
    const fs::path cache = fs::temp_directory_path() / ("p2s_cli_hub_" + std::to_string(getpid()));
    fs::remove_all(cache);
    fs::create_directories(cache);
    std::ofstream(cache / "in.jsonl") << R"({"id": 1, "image": "x.png", "question": "q"})" << "\n";
    for (const char* program : {"pix2struct-vqa", "pix2struct-run", "pix2struct-server"}) {
        CAPTURE(program);
        int status = -1;
        const std::string extra = std::string(program) == "pix2struct-vqa"   ? " --image x.png --question q"
                                  : std::string(program) == "pix2struct-run" ? " --input " + quoted((cache / "in.jsonl").string()) +
                                                                                   " --output " + quoted((cache / "out.jsonl").string())
                                                                             : " --port 0";
        const std::string out = run("HF_HUB_CACHE=" + quoted(cache.string()) + " HF_ENDPOINT=http://127.0.0.1:9 " +
                                        quoted(p2s_test::program(program).string()) + " --model google/pix2struct-ai2d-base --offline" +
                                        extra + " 2>&1",
                                    status);
        CHECK(status == 1);
        CHECK(out.find("google/pix2struct-ai2d-base@main: this revision is not in the Hugging Face cache") != std::string::npos);
        CHECK(out.find("--offline") != std::string::npos);
    }
    fs::remove_all(cache);
}
