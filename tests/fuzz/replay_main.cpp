// A plain main for the fuzz targets where libFuzzer is not used (gcc builds): runs every file of the given
// files and folders through LLVMFuzzerTestOneInput once, so the seed corpora and the regression inputs
// are checked by every test run (under PIX2STRUCT_SANITIZE, with ASan/UBSan). Prints the count; a folder
// that holds no file is an error, so a missing corpus cannot pass.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    size_t runs = 0;
    auto replay = [&](const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
        ++runs;
    };
    for (int i = 1; i < argc; ++i) {
        const fs::path p = argv[i];
        if (!fs::is_directory(p)) {
            replay(p);
            continue;
        }
        size_t before = runs;
        for (const auto& e : fs::recursive_directory_iterator(p))
            if (e.is_regular_file()) replay(e.path());
        if (runs == before) {
            std::fprintf(stderr, "%s: no input files\n", argv[i]);
            return 1;
        }
    }
    std::printf("%zu inputs replayed, no finding\n", runs);
    return runs ? 0 : 1;
}
