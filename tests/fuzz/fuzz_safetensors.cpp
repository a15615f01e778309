// Bytes -> SafetensorsFile::from_memory: header JSON, dtypes, shapes, offsets; then every tensor read.
#include <vector>

#include "fuzz.hpp"
#include "pix2struct/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run([&] {
        const auto in = fuzz::bytes(data, size);
        const auto file = pix2struct::SafetensorsFile::from_memory({in.begin(), in.end()}, "fuzz.safetensors");
        for (const pix2struct::TensorView& t : file.tensors())
            if (t.bytes.size() <= (1u << 20) && (t.dtype == pix2struct::DType::F32 || t.dtype == pix2struct::DType::BF16 ||
                                                 t.dtype == pix2struct::DType::F16))
                (void)t.to_float();
    });
}
