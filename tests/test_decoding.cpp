// Decoding beyond greedy, against the reference on the tiny checkpoint (goldens/decoding.json from
// tests/reference/make_decoding_goldens.py): choice scoring, beam search, generation_config.json, a long answer
// past the relative-position range, the cross-attention map; and parse_choices on the question styles of the
// datasets.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2struct/choices.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/pix2struct.hpp"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kModels = fs::path(PIX2STRUCT_TEST_DATA) / "models";

nlohmann::json decoding_goldens() {
    std::ifstream in(kModels / "goldens" / "decoding.json");
    REQUIRE(in);
    return nlohmann::json::parse(in);
}

Pipeline tiny() { return Pipeline::load(kModels / "tiny", {.threads = 2}); }
}  // namespace

TEST_CASE("score: each candidate's teacher-forced log-probabilities equal the reference's (1e-4)") {
    const auto g = decoding_goldens();
    Pipeline pipe = tiny();
    const Image img = load_image(kModels / "images" / g["image"].get<std::string>());
    std::vector<std::string> texts;
    for (const auto& c : g["scoring"]) texts.push_back(c["text"].get<std::string>());
    REQUIRE(texts.size() >= 4);

    for (const bool with_eos : {true, false}) {
        CAPTURE(with_eos);
        const std::vector<Choice> got = pipe.score(img, g["question"].get<std::string>(), texts, {.with_eos = with_eos});
        REQUIRE(got.size() == texts.size());
        double total = 0;
        for (size_t c = 0; c < texts.size(); ++c) {
            CAPTURE(texts[c]);
            std::vector<int64_t> ids = g["scoring"][c]["ids"].get<std::vector<int64_t>>();
            std::vector<double> lp = g["scoring"][c]["logprobs"].get<std::vector<double>>();
            if (!with_eos) {
                ids.pop_back();
                lp.pop_back();
            }
            CHECK(got[c].text == texts[c]);
            CHECK(got[c].ids == ids);
            double sum = 0;
            for (double x : lp) sum += x;
            CHECK(std::abs(got[c].logprob - sum) <= 1e-4);
            CHECK(std::abs(got[c].mean_logprob - sum / double(lp.size())) <= 1e-4);
            total += got[c].prob;
        }
        CHECK(std::abs(total - 1.0) < 1e-9);
        // probabilities follow the log-likelihoods
        for (size_t a = 0; a < got.size(); ++a)
            for (size_t b = 0; b < got.size(); ++b)
                if (got[a].logprob > got[b].logprob) CHECK(got[a].prob > got[b].prob);
    }
    CHECK_THROWS_WITH_AS(pipe.score(img, "q", std::vector<std::string>{"a", ""}), doctest::Contains("candidate 2 is empty"), Error);
}

TEST_CASE("beam search: ids and sequence scores equal generate(num_beams=…) for several settings") {
    const auto g = decoding_goldens();
    Pipeline pipe = tiny();
    const Image img = load_image(kModels / "images" / g["image"].get<std::string>());
    bool different_lengths = false;
    for (const auto& c : g["beams"]) {
        CAPTURE(c["kwargs"].dump());
        const GenerationConfig settings = generation_from_json(c["kwargs"], "test", pipe.generation());
        const Answer a = pipe.ask(img, g["question"].get<std::string>(), {.generation = settings});
        const auto& want = c["sequences"];
        REQUIRE(a.sequences.size() == want.size());
        std::vector<size_t> lengths;
        for (size_t i = 0; i < want.size(); ++i) {
            CAPTURE(i);
            CHECK(a.sequences[i].ids == want[i]["ids"].get<std::vector<int64_t>>());
            const double score = want[i]["score"].get<double>();
            CHECK(std::abs(a.sequences[i].score - score) <= 1e-5 * (1 + std::abs(score)));
            lengths.push_back(a.sequences[i].ids.size());
        }
        CHECK(a.ids == a.sequences[0].ids);
        CHECK(a.text == a.sequences[0].text);
        different_lengths = different_lengths || std::adjacent_find(lengths.begin(), lengths.end(), std::not_equal_to<>()) != lengths.end();
    }
    CHECK(different_lengths);  // the goldens include beams that finished at different steps
}

TEST_CASE("generation_config.json decides how ask() decodes, as transformers reads it") {
    const auto g = decoding_goldens();
    const fs::path dir = fs::temp_directory_path() / ("p2s_genconfig_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& f : fs::directory_iterator(kModels / "tiny"))
        if (f.path().filename() != "generation_config.json") fs::create_symlink(fs::absolute(f.path()), dir / f.path().filename());
    std::ofstream(dir / "generation_config.json") << g["from_file"]["generation_config"].dump();
    Pipeline pipe = Pipeline::load(dir, {.threads = 2});
    CHECK(pipe.generation().num_beams == g["from_file"]["generation_config"]["num_beams"].get<int>());
    const Image img = load_image(kModels / "images" / g["image"].get<std::string>());
    CHECK(pipe.ask(img, g["question"].get<std::string>()).ids == g["from_file"]["ids"].get<std::vector<int64_t>>());

    // options override it: greedy
    GenerationConfig greedy = pipe.generation();
    greedy.num_beams = 1;
    CHECK(pipe.ask(img, g["question"].get<std::string>(), {.generation = greedy}).sequences.empty());

    // a bad file is an error naming it
    std::ofstream(dir / "generation_config.json", std::ios::trunc) << R"({"num_beams": 2, "num_return_sequences": 3})";
    CHECK_THROWS_WITH_AS(Pipeline::load(dir), doctest::Contains("generation_config.json: num_return_sequences 3 is more than num_beams 2"), Error);
    std::ofstream(dir / "generation_config.json", std::ios::trunc) << R"({"early_stopping": "sometimes"})";
    CHECK_THROWS_WITH_AS(Pipeline::load(dir), doctest::Contains("'early_stopping' must be true, false or \"never\""), Error);
    fs::remove_all(dir);
}

TEST_CASE("a long answer (≥ 300 tokens, past the relative-position range) equals the reference's") {
    const auto g = decoding_goldens();
    Pipeline pipe = tiny();
    const Image img = load_image(kModels / "images" / g["image"].get<std::string>());
    const auto& c = g["long"];
    const std::vector<int64_t> want = c["ids"].get<std::vector<int64_t>>();
    REQUIRE(want.size() >= 300);
    const Answer a = pipe.ask(img, c["question"].get<std::string>(), {.max_new_tokens = c["max_new_tokens"].get<int>()});
    CHECK(a.ids == want);
}

TEST_CASE("parse_choices: the options as AI2D and other datasets write them") {
    using V = std::vector<std::string>;
    CHECK(parse_choices("What does the label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud") ==
          V{"lava", "core", "tunnel", "ash cloud"});
    // parentheses and numbers inside an option, a trailing comma
    CHECK(parse_choices("Which one? (1) core (inner), (2) 12 km (3) stage (4) of 5 (4)") == V{"core (inner)", "12 km", "stage", "of 5 (4)"});
    // the question itself says "(1)": the reading with the most options wins
    CHECK(parse_choices("In step (1) what forms? (1) ice (2) rain") == V{"ice", "rain"});
    CHECK(parse_choices("Is it alive? (1) yes") == V{"yes"});
    CHECK(parse_choices("Which is larger? A. the sun B. the moon C. Mars") == V{"the sun", "the moon", "Mars"});
    CHECK(parse_choices("Pick one: a) red b) green c) blue") == V{"red", "green", "blue"});
    // not options
    CHECK(parse_choices("What is shown?").empty());
    CHECK(parse_choices("Who wrote A. Smith's book?").empty());  // one letter marker is text
    CHECK(parse_choices("(2) only a second option").empty());
    CHECK(parse_choices("(1)  (2) b").empty());  // an empty option
}
