// pix2struct/error.hpp — the one exception type of the library.
//
// Every run-time failure (a bad file, image, option or tensor) is reported as a pix2struct::Error
// whose message is a sentence naming the input and what is wrong with it, e.g.
//   "model.safetensors: tensor 'decoder.lm_head.weight': shape [10, 4] needs 160 bytes, range holds 80".
#pragma once

#include <stdexcept>
#include <string>

namespace pix2struct {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail {
// Builds an error message from any streamable pieces: fail("file.png: ", w, "x", h, " is too large").
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts);
}  // namespace detail

}  // namespace pix2struct

#include <sstream>

template <class... Parts>
[[noreturn]] void pix2struct::detail::fail(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    throw Error(out.str());
}
