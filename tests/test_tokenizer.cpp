// Tokenizer against HF T5Tokenizer (transformers 4.57.6) outputs: tests/data/models/tokenizer_goldens.json,
// written by tests/reference/make_model_goldens.py with the committed tiny spiece.model.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2struct/tokenizer.hpp"

namespace fs = std::filesystem;
using pix2struct::Tokenizer;

static nlohmann::json tokenizer_goldens() {
    std::ifstream in(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tokenizer_goldens.json");
    REQUIRE(in);
    return nlohmann::json::parse(in);
}

TEST_CASE("tokenizer: sizes match HF's len(tokenizer) and the SentencePiece vocabulary") {
    const auto g = tokenizer_goldens();
    const Tokenizer tok = Tokenizer::load(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny");
    CHECK(tok.pieces() == g["spiece_pieces"].get<int64_t>());
    CHECK(tok.size() == g["vocab_size"].get<int64_t>());
}

TEST_CASE("tokenizer: decode(skip_special_tokens=True) equals HF on every golden id list") {
    const auto g = tokenizer_goldens();
    const Tokenizer tok = Tokenizer::load(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny");
    int n = 0;
    for (const auto& c : g["decode"]) {
        const auto ids = c["ids"].get<std::vector<int64_t>>();
        CAPTURE(c["ids"].dump());
        CHECK(tok.decode(ids) == c["text"].get<std::string>());
        ++n;
    }
    CHECK(n > 30);
}

TEST_CASE("tokenizer: encode equals HF (pieces + </s>)") {
    const auto g = tokenizer_goldens();
    const Tokenizer tok = Tokenizer::load(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny");
    for (const auto& c : g["encode"]) {
        const std::string text = c["text"].get<std::string>();
        CAPTURE(text);
        CHECK(tok.encode(text) == c["ids"].get<std::vector<int64_t>>());
    }
}

TEST_CASE("tokenizer: a missing or unreadable model is an error naming the file") {
    CHECK_THROWS_WITH_AS(Tokenizer::load("/nonexistent/dir/spiece.model"),
                         doctest::Contains("/nonexistent/dir/spiece.model"), pix2struct::Error);
    const fs::path bad = fs::temp_directory_path() / "p2s_bad_spiece.model";
    std::ofstream(bad) << "not a sentencepiece model";
    CHECK_THROWS_WITH_AS(Tokenizer::load(bad), doctest::Contains("p2s_bad_spiece.model"), pix2struct::Error);
    fs::remove(bad);
}
