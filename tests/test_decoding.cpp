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
#include <unistd.h>
#include <vector>

#include "model_goldens.hpp"
#include "pix2struct/choices.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/image/attention_map.hpp"
#include "pix2struct/image/header.hpp"
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/weights.hpp"

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

TEST_CASE("score: each candidate's teacher-forced log-probabilities equal the reference's") {
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
            CHECK(std::abs(got[c].logprob - sum) <= p2s_test::logprob_tolerance(lp.size()));
            CHECK(std::abs(got[c].mean_logprob - sum / double(lp.size())) <= p2s_test::kTokenLogprobTol);
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
            CHECK(std::abs(a.sequences[i].score - score) <= p2s_test::beam_score_tolerance(score));
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

namespace {
// A checkpoint whose cross-attention looks at the darkest patches: the encoder keeps only the patch
// projection (dim 0: minus the sum of the patch's normalised pixels, dim 1: a constant; every layer's output
// projections are zero, the row/column embeddings too), so after the final norm dim 0 grows with the
// patch's darkness; the decoder's hidden state stays its token embedding (e_1; output projections zero), so
// every head's query is a large constant on the key dimension that reads dim 0. Every layer and head then
// puts nearly all its weight on the darkest patches.
fs::path write_looking_checkpoint(const fs::path& dir) {
    fs::create_directories(dir);
    Config c = Config::tiny();
    const int64_t D = c.text.d_kv;
    SafetensorsWriter writer;
    VisionWeights vision;
    TextWeights text;
    std::vector<float> v;
    for_each_weight(c, vision, text, [&](Weight&, const std::string& name, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        v.assign(size_t(n), 0.0f);
        const int64_t cols = shape.back();
        auto at = [&](int64_t r, int64_t col) -> float& { return v[size_t(r * cols + col)]; };
        if (name.ends_with("norm.weight") || name.ends_with("layernorm.weight")) {
            std::fill(v.begin(), v.end(), 1.0f);
        } else if (name == "encoder.embeddings.patch_projection.weight") {
            for (int64_t k = 0; k < cols; ++k) at(0, k) = -1.0f / float(cols);
        } else if (name == "encoder.embeddings.patch_projection.bias") {
            v[1] = 10.0f;
        } else if (name == "decoder.embed_tokens.weight") {
            for (int64_t t = 0; t < shape[0]; ++t) at(t, 1) = 1.0f;
        } else if (name.ends_with("encoder_decoder_attention.attention.query.weight")) {
            for (int64_t h = 0; h < c.text.num_heads; ++h) at(h * D, 1) = 2.5f;
        } else if (name.ends_with("encoder_decoder_attention.attention.key.weight")) {
            for (int64_t h = 0; h < c.text.num_heads; ++h) at(h * D, 0) = 1.0f;
        } else if (name == "decoder.lm_head.weight") {
            at(5, 1) = 1.0f;  // always token 5
        }
        writer.add_f32(name, shape, v);
    });
    writer.write(dir / "model.safetensors");
    std::ofstream(dir / "config.json") << c.to_json().dump();
    PreprocessorConfig pre;
    pre.max_patches = 64;
    pre.is_vqa = true;
    std::ofstream(dir / "preprocessor_config.json") << pre.to_json().dump();
    fs::copy_file(kModels / "tiny" / "spiece.model", dir / "spiece.model", fs::copy_options::overwrite_existing);
    return dir;
}
}  // namespace

TEST_CASE("cross-attention map: weights land on the pixels the model looked at, question header included") {
    const fs::path dir = write_looking_checkpoint(fs::temp_directory_path() / ("p2s_looking_" + std::to_string(::getpid())));
    Pipeline pipe = Pipeline::load(dir, {.threads = 2});
    // a white picture with a black square; the question header goes above it
    Image img;
    img.width = 160;
    img.height = 120;
    img.rgb.assign(size_t(img.width) * img.height * 3, 255);
    const int sx0 = 96, sx1 = 144, sy0 = 56, sy1 = 104;  // the square, in the picture's pixels
    for (int y = sy0; y < sy1; ++y)
        for (int x = sx0; x < sx1; ++x)
            for (int ch = 0; ch < 3; ++ch) img.rgb[(size_t(y) * img.width + x) * 3 + ch] = 0;
    const std::string question = "Where?";
    const Patches patches = pipe.prepare(img, question);
    const Answer a = pipe.run(patches, {.max_new_tokens = 3, .cross_attention = true});
    REQUIRE(a.cross_attention.tokens == 3);
    CHECK(a.cross_attention.layers == 2);
    CHECK(a.cross_attention.patches == patches.num_real());
    CHECK(a.cross_attention.grid_rows == patches.rows);
    CHECK(a.cross_attention.grid_cols == patches.cols);

    // where the square is in the picture the model saw: below the header (render_question), then resized to
    // the patch grid — computed from the geometry, not from the patches
    const Image rendered = render_question(img, question, "");
    const double s = double(rendered.width) / img.width, top = rendered.height - int(img.height * s);
    const double fx = patches.cols * 16.0 / rendered.width, fy = patches.rows * 16.0 / rendered.height;
    const double rx0 = sx0 * s * fx, rx1 = sx1 * s * fx, ry0 = (top + sy0 * s) * fy, ry1 = (top + sy1 * s) * fy;
    REQUIRE(top > 0);  // there is a header
    auto inside = [&](int64_t j, double margin) {  // patch j's cell overlaps the square (grown by margin pixels)
        const double x = double(j % patches.cols) * 16, y = double(j / patches.cols) * 16;
        return x + 16 > rx0 - margin && x < rx1 + margin && y + 16 > ry0 - margin && y < ry1 + margin;
    };
    for (int layer = -1; layer < 2; ++layer) {
        CAPTURE(layer);
        const std::vector<float> w = attention_weights(a.cross_attention, layer);
        double on = 0, total = 0;
        for (size_t j = 0; j < w.size(); ++j) {
            total += w[j];
            if (inside(int64_t(j), 0)) on += w[j];
        }
        CHECK(std::abs(total - 1.0) < 1e-4);  // a softmax over the patches
        CHECK(on > 0.95);
        // the overlay's hottest pixel is on the square
        const Image map = attention_overlay(patches, w);
        CHECK(map.width == patches.cols * 16);
        CHECK(map.height == patches.rows * 16);
        int best = -1, bx = 0, by = 0;
        for (int y = 0; y < map.height; ++y)
            for (int x = 0; x < map.width; ++x) {
                const uint8_t* p = map.pixel(x, y);
                const int hot = int(p[0]) + int(p[1]) - 2 * int(p[2]);  // the heat colour has no blue
                if (hot > best) best = hot, bx = x, by = y;
            }
        CHECK(bx >= rx0 - 16);
        CHECK(bx < rx1 + 16);
        CHECK(by >= ry0 - 16);
        CHECK(by < ry1 + 16);
    }
    CHECK_THROWS_WITH_AS(attention_weights(a.cross_attention, 2), doctest::Contains("layer 2 of a decoder with 2 layers"), Error);
    fs::remove_all(dir);
}
