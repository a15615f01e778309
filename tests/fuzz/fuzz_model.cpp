// The whole input path of a question, with one file of the model folder replaced by the fuzzer's bytes:
// Pipeline::load (config.json, preprocessor_config.json, tokenizer_config.json, the safetensors header and
// the weight binding it implies) and then one question answered on a small image.
//   input[0] % 4 chooses the file: 0 config.json, 1 preprocessor_config.json, 2 tokenizer_config.json,
//   3 the header of model.safetensors (the tiny checkpoint's data section follows it); input[1:] is it.
// The other files are the tiny checkpoint's (tests/data/models/tiny), copied once to a temporary folder.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz.hpp"
#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/read_file.hpp"

namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
    const std::vector<std::byte> bytes = pix2struct::detail::read_whole_file(p, "a model file", 1 << 30);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}
void write(const fs::path& p, std::string_view a, std::string_view b = {}) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(a.data(), std::streamsize(a.size()));
    out.write(b.data(), std::streamsize(b.size()));
}

struct Folder {
    fs::path dir = fs::temp_directory_path() / ("p2s_fuzz_model_" + std::to_string(::getpid()));
    std::vector<std::string> names{"config.json", "preprocessor_config.json", "tokenizer_config.json", "model.safetensors"};
    std::vector<std::string> originals;
    std::string weights_data;  // the safetensors data section
    pix2struct::Image image;
    Folder() {
        const fs::path tiny = fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny";
        fs::remove_all(dir);
        fs::copy(tiny, dir);
        for (const std::string& n : names) originals.push_back(read(dir / n));
        const std::string& st = originals.back();
        uint64_t header = 0;
        for (int i = 7; i >= 0; --i) header = header << 8 | uint8_t(st[size_t(i)]);
        weights_data = st.substr(8 + header);
        image.width = 48, image.height = 32;
        image.rgb.resize(size_t(image.width) * image.height * 3);
        for (size_t i = 0; i < image.rgb.size(); ++i) image.rgb[i] = uint8_t(i * 7);
    }
    ~Folder() { fs::remove_all(dir); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Folder folder;
    if (size < 1) return 0;
    const size_t which = data[0] % 4;
    const std::string_view content = fuzz::text(data + 1, size - 1);
    const fs::path file = folder.dir / folder.names[which];
    if (which == 3) {
        std::string len(8, '\0');
        for (int i = 0; i < 8; ++i) len[size_t(i)] = char(uint64_t(content.size()) >> (8 * i));
        write(file, len + std::string(content), folder.weights_data);
    } else {
        write(file, content);
    }
    fuzz::run([&] {
        pix2struct::Pipeline pipe = pix2struct::Pipeline::load(
            folder.dir, {.threads = 1, .max_patches = 0, .font_path = {}, .mmap = false, .max_memory_bytes = 256 << 20});
        (void)pipe.ask(folder.image, "What is shown?", {.max_new_tokens = 3});
    });
    write(file, folder.originals[which]);
    return 0;
}
