// Token ids (little-endian int32s, any value) -> Tokenizer::decode with the test model's spiece.model.
#include <cstring>
#include <vector>

#include "fuzz.hpp"
#include "pix2struct/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const pix2struct::Tokenizer tok =
        pix2struct::Tokenizer::load(std::string(PIX2STRUCT_TEST_DATA) + "/models/tiny/spiece.model");
    std::vector<int64_t> ids(size / 4);
    for (size_t i = 0; i < ids.size(); ++i) {
        int32_t v;
        std::memcpy(&v, data + 4 * i, 4);
        ids[i] = v;
    }
    return fuzz::run([&] { (void)tok.decode(ids); });
}
