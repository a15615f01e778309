// JSON text -> Config (config.json) and PreprocessorConfig (preprocessor_config.json) and their checks.
#include <nlohmann/json.hpp>

#include "fuzz.hpp"
#include "pix2struct/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    fuzz::run([&] { (void)pix2struct::Config::from_json(j, "config.json"); });
    fuzz::run([&] { (void)pix2struct::PreprocessorConfig::from_json(j, "preprocessor_config.json"); });
    return 0;
}
