// Config parsing: each committed config.json resolves to what transformers resolves (defaults
// included), recorded by tests/reference/make_config_goldens.py in tests/data/configs/resolved.json.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "pix2struct/config.hpp"

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kConfigs = fs::path(PIX2STRUCT_TEST_DATA) / "configs";

void check_resolved(const Config& c, const nlohmann::json& r) {
    const auto& v = r["vision"];
    CHECK(c.vision.hidden_size == v["hidden_size"]);
    CHECK(c.vision.patch_embed_hidden_size == v["patch_embed_hidden_size"]);
    CHECK(c.vision.d_ff == v["d_ff"]);
    CHECK(c.vision.d_kv == v["d_kv"]);
    CHECK(c.vision.num_hidden_layers == v["num_hidden_layers"]);
    CHECK(c.vision.num_attention_heads == v["num_attention_heads"]);
    CHECK(c.vision.seq_len == v["seq_len"]);
    CHECK(c.vision.layer_norm_eps == doctest::Approx(v["layer_norm_eps"].get<double>()));
    CHECK(c.vision.dense_act_fn == v["dense_act_fn"]);
    const auto& t = r["text"];
    CHECK(c.text.vocab_size == t["vocab_size"]);
    CHECK(c.text.hidden_size == t["hidden_size"]);
    CHECK(c.text.d_kv == t["d_kv"]);
    CHECK(c.text.d_ff == t["d_ff"]);
    CHECK(c.text.num_layers == t["num_layers"]);
    CHECK(c.text.num_heads == t["num_heads"]);
    CHECK(c.text.relative_attention_num_buckets == t["relative_attention_num_buckets"]);
    CHECK(c.text.relative_attention_max_distance == t["relative_attention_max_distance"]);
    CHECK(c.text.layer_norm_epsilon == doctest::Approx(t["layer_norm_epsilon"].get<double>()));
    CHECK(c.text.dense_act_fn == t["dense_act_fn"]);
    CHECK(c.text.decoder_start_token_id == t["decoder_start_token_id"]);
    CHECK(c.text.pad_token_id == t["pad_token_id"]);
    CHECK(c.text.eos_token_id == t["eos_token_id"]);
    CHECK(c.is_vqa == r["is_vqa"]);
    CHECK(c.generation.max_length == r["max_length"]);
}

nlohmann::json resolved() {
    std::ifstream in(kConfigs / "resolved.json");
    return nlohmann::json::parse(in);
}
}  // namespace

TEST_CASE("base, large and tiny configs resolve as in transformers") {
    const nlohmann::json r = resolved();
    for (const char* name : {"ai2d-base", "ai2d-large", "tiny"}) {
        CAPTURE(name);
        check_resolved(Config::load(kConfigs / (std::string(name) + ".config.json")), r[name]);
    }
}

TEST_CASE("named presets equal the published base and large configs") {
    const nlohmann::json r = resolved();
    check_resolved(Config::base(), r["ai2d-base"]);
    check_resolved(Config::large(), r["ai2d-large"]);
    Config tiny = Config::tiny();
    check_resolved(tiny, r["tiny"]);
}

TEST_CASE("to_json round trips") {
    for (const Config& c : {Config::base(), Config::large(), Config::tiny()}) {
        const Config back = Config::from_json(c.to_json(), "round trip");
        CHECK(back.to_json() == c.to_json());
    }
    const PreprocessorConfig p{.max_patches = 512, .patch_height = 8, .patch_width = 4, .is_vqa = true};
    const PreprocessorConfig q = PreprocessorConfig::from_json(p.to_json(), "round trip");
    CHECK(q.max_patches == 512);
    CHECK(q.patch_height == 8);
    CHECK(q.patch_width == 4);
    CHECK(q.is_vqa);
}

TEST_CASE("preprocessor config of ai2d-base") {
    const PreprocessorConfig p = PreprocessorConfig::load(kConfigs / "ai2d-base.preprocessor_config.json");
    CHECK(p.max_patches == 2048);
    CHECK(p.patch_height == 16);
    CHECK(p.patch_width == 16);
    CHECK(p.is_vqa);
}

TEST_CASE("bad configs are rejected naming the file and key") {
    using nlohmann::json;
    CHECK_THROWS_WITH_AS(Config::from_json(json::array(), "c.json"), doctest::Contains("c.json: expected a JSON object"),
                         Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"text_config", {{"num_layers", "12"}}}}, "c.json"),
                         doctest::Contains("c.json: text_config: 'num_layers' must be an integer"), Error);
    // an integer past the field's type is refused before it is narrowed (2^32 + 2 would become 2)
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"text_config", {{"num_layers", 4294967298ull}}}}, "c.json"),
                         doctest::Contains("c.json: text_config: 'num_layers' is 4294967298, out of range"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"vision_config", {{"hidden_size", -4294967296ll}}}}, "c.json"),
                         doctest::Contains("'hidden_size' is -4294967296, out of range"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"vision_config", {{"hidden_size", 0}}}}, "c.json"),
                         doctest::Contains("'vision_config.hidden_size' must be in [1, 65536], got 0"), Error);
    // Values that size or index something are bounded (issue: fuzzed configs).
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"text_config", {{"relative_attention_num_buckets", 4},
                                                                 {"relative_attention_max_distance", 1}}}}, "c.json"),
                         doctest::Contains("relative_attention_max_distance (past relative_attention_num_buckets / 2)' must be in [3,"),
                         Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"text_config", {{"num_layers", 1000000}}}}, "c.json"),
                         doctest::Contains("'text_config.num_layers' must be in [1, 256]"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"vision_config", {{"num_attention_heads", 1024}, {"d_kv", 4096}}}}, "c.json"),
                         doctest::Contains("num_attention_heads x d_kv"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"vision_config", {{"hidden_size", 1024}}}}, "c.json"),
                         doctest::Contains("cross-attention needs them equal"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"text_config", {{"dense_act_fn", "relu"}}}}, "c.json"),
                         doctest::Contains("'relu' is not supported"), Error);
    CHECK_THROWS_WITH_AS(Config::from_json(json{{"is_vqa", 1}}, "c.json"), doctest::Contains("'is_vqa' must be true or false"),
                         Error);
    CHECK_THROWS_WITH_AS(PreprocessorConfig::from_json(json{{"patch_size", 16}}, "p.json"),
                         doctest::Contains("p.json: 'patch_size' must be an object"), Error);
    CHECK_THROWS_WITH_AS(PreprocessorConfig::from_json(json{{"max_patches", -1}}, "p.json"),
                         doctest::Contains("'max_patches' must be in [1, 65536], got -1"), Error);
    CHECK_THROWS_WITH_AS(PreprocessorConfig::from_json(json{{"patch_size", {{"height", 16}, {"width", 0}}}}, "p.json"),
                         doctest::Contains("p.json: 'patch_size.width' must be in [1, 256], got 0"), Error);
    CHECK_THROWS_WITH_AS(PreprocessorConfig::from_json(json{{"patch_size", {{"height", "16"}}}}, "p.json"),
                         doctest::Contains("p.json: patch_size: 'height' must be an integer"), Error);
    CHECK_THROWS_WITH_AS(Config::load("/nonexistent/config.json"), doctest::Contains("/nonexistent/config.json: cannot open"),
                         Error);
    const fs::path bad = fs::temp_directory_path() / "pix2struct-bad-config.json";
    std::ofstream(bad) << "{ \"text_config\": ";
    CHECK_THROWS_WITH_AS(Config::load(bad), doctest::Contains("not valid JSON"), Error);
}
