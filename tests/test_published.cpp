// Every published Pix2Struct-architecture checkpoint (pix2struct base/large for each task, the pretrained ones,
// MatCha and its fine-tunes, DePlot): its config.json and preprocessor_config.json, as published
// (tests/data/configs/published, written by tests/reference/make_published_configs.py), load with the right
// sizes and task flag; a random checkpoint of its shape (all its layers, widths and vocabulary) runs end to
// end with its files at a small max_patches, drawing the question as a header exactly when the checkpoint is a
// VQA one; a checkpoint that publishes no preprocessor_config.json is refused naming the file.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2struct/config.hpp"
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/random_checkpoint.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace pix2struct;

namespace {
const fs::path kPublished = fs::path(PIX2STRUCT_TEST_DATA) / "configs" / "published";

json index() {
    std::ifstream in(kPublished / "checkpoints.json");
    REQUIRE(in);
    return json::parse(in);
}
struct Size {
    int hidden, layers, heads, d_ff;
};
Size size_of(const std::string& s) { return s == "large" ? Size{1536, 18, 24, 3968} : Size{768, 12, 12, 2048}; }
}  // namespace

TEST_CASE("published checkpoints: every config.json and preprocessor_config.json loads with its size and task flag") {
    const json all = index();
    CHECK(all.size() >= 24);
    for (const json& c : all) {
        const std::string repo = c["repo"];
        CAPTURE(repo);
        const fs::path dir = kPublished / c["folder"].get<std::string>();
        const Config config = Config::load(dir / "config.json");
        const Size s = size_of(c["size"]);
        for (const auto& [hidden, layers, heads, d_ff] :
             {std::array<int, 4>{config.vision.hidden_size, config.vision.num_hidden_layers, config.vision.num_attention_heads, config.vision.d_ff},
              std::array<int, 4>{config.text.hidden_size, config.text.num_layers, config.text.num_heads, config.text.d_ff}}) {
            CHECK(hidden == s.hidden);
            CHECK(layers == s.layers);
            CHECK(heads == s.heads);
            CHECK(d_ff == s.d_ff);
        }
        CHECK(config.text.vocab_size == 50244);
        CHECK(config.vision.patch_embed_hidden_size == 768);  // textcaps-base omits the key: the default
        CHECK(config.generation.new_tokens() == 20);            // none publishes a generation_config.json
        if (c["is_vqa"].is_null()) {
            CHECK_FALSE(fs::exists(dir / "preprocessor_config.json"));
            continue;
        }
        const PreprocessorConfig p = PreprocessorConfig::load(dir / "preprocessor_config.json");
        CHECK(p.is_vqa == c["is_vqa"].get<bool>());
        CHECK(p.max_patches == c["max_patches"].get<int>());
        CHECK(p.patch_height == 16);
        CHECK(p.patch_width == 16);
    }
}

TEST_CASE("published checkpoints: a random checkpoint of each one's shape runs end to end with its files; the header is drawn for VQA ones only") {
    const fs::path root = fs::temp_directory_path() / ("p2s_published_" + std::to_string(getpid()));
    fs::remove_all(root);
    const Image image = load_image(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "images" / "diagram.png");
    const fs::path spiece = fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny" / "spiece.model";
    std::map<std::string, fs::path> weights;  // one random checkpoint per size, shared through symlinks
    int ran = 0;
    for (const json& c : index()) {
        const std::string repo = c["repo"], size = c["size"];
        CAPTURE(repo);
        const fs::path published = kPublished / c["folder"].get<std::string>();
        if (!weights.count(size)) {
            weights[size] = root / ("weights-" + size);
            write_random_checkpoint(weights[size], Config::load(published / "config.json"), PreprocessorConfig{}, DType::BF16, 7);
        }
        const fs::path dir = root / c["folder"].get<std::string>();
        fs::create_directories(dir);
        for (const auto& e : fs::directory_iterator(published)) fs::copy_file(e.path(), dir / e.path().filename());
        fs::create_symlink(weights[size] / "model.safetensors", dir / "model.safetensors");
        fs::create_symlink(spiece, dir / "spiece.model");
        if (c["is_vqa"].is_null()) {
            CHECK_THROWS_WITH(Pipeline::load(dir, {.threads = 2, .max_patches = 16}), doctest::Contains("preprocessor_config.json"));
            continue;
        }
        const bool vqa = c["is_vqa"].get<bool>();
        Pipeline pipe = Pipeline::load(dir, {.threads = 2, .max_patches = 16});
        CHECK(pipe.is_vqa() == vqa);
        CHECK(pipe.max_patches() == 16);
        if (vqa) {
            CHECK_THROWS_WITH(pipe.ask(image), doctest::Contains("a question is required"));
            // the question is drawn: another question, other pixels
            CHECK(pipe.prepare(image, "What is shown?").flattened != pipe.prepare(image, "Which stage is last?").flattened);
        } else {
            CHECK(pipe.prepare(image, "What is shown?").flattened == pipe.prepare(image, "Which stage is last?").flattened);
        }
        const Answer a = pipe.ask(image, vqa ? "What is shown?" : "", {.max_new_tokens = 2});
        CHECK(a.ids.size() >= 1);
        CHECK(a.ids.size() <= 2);
        CHECK(a.real_patches > 0);
        CHECK(a.real_patches <= 16);
        ++ran;
    }
    CHECK(ran >= 23);
    fs::remove_all(root);
}
