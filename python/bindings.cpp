// python/bindings.cpp — pix2struct_cpp._core: the C++ Pipeline for Python (pybind11). The Python package
// (python/pix2struct_cpp/__init__.py) turns paths, bytes, PIL images and arrays into Images and wraps these
// calls; the model runs with the GIL released, so pipelines in several Python threads run at once.
// Every pix2struct::Error reaches Python as pix2struct_cpp.Error with the library's message.
#define PIX2STRUCT_IMPLEMENTATION
#include <pix2struct/pix2struct.hpp>
#include <pix2struct/basic_pipeline.hpp>
#include <pix2struct/config.hpp>
#include <pix2struct/hub.hpp>

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;
using namespace pix2struct;

namespace {

// An HxWx3 uint8 image from any object with the buffer protocol (a numpy array, a memoryview of
// PIL.Image.tobytes() reshaped by the caller, ...); strides are honoured, so slices need no copy first.
Image image_from_buffer(const py::buffer& buffer) {
    const py::buffer_info info = buffer.request();
    if (info.ndim != 3 || info.shape[2] != 3)
        detail::fail("an image array must be height x width x 3 (RGB), not ", info.ndim, " dimensions",
                     info.ndim == 3 ? " with " + std::to_string(info.shape[2]) + " channels" : std::string());
    if (info.itemsize != 1 || (info.format != "B" && info.format != "c"))
        detail::fail("an image array must hold uint8 values, not format '", info.format, "'");
    const ImageLimits limits;
    detail::check_image_size("the array", "RGB", info.shape[1], info.shape[0], limits);
    Image img;
    img.height = int(info.shape[0]);
    img.width = int(info.shape[1]);
    img.rgb.resize(size_t(img.width) * img.height * 3);
    const auto* base = static_cast<const uint8_t*>(info.ptr);
    const size_t row = size_t(img.width) * 3;
    uint8_t* out = img.rgb.data();
    for (int y = 0; y < img.height; ++y, out += row) {
        const uint8_t* in = base + y * info.strides[0];
        if (info.strides[1] == 3 && info.strides[2] == 1) {  // pixels packed within the row (PIL, C order)
            std::memcpy(out, in, row);
            continue;
        }
        for (int x = 0; x < img.width; ++x)
            for (int c = 0; c < 3; ++c) out[x * 3 + c] = in[x * info.strides[1] + c * info.strides[2]];
    }
    return img;
}

// The decoding settings ask() takes as keywords (generation_config.json's keys: num_beams, length_penalty,
// early_stopping, no_repeat_ngram_size, num_return_sequences, eos_token_id, ...) over the checkpoint's, read as
// that file is read; a key it does not know is an Error (a typo must not be ignored).
std::optional<GenerationConfig> generation(const Pipeline& pipe, const py::kwargs& options) {
    if (options.empty()) return std::nullopt;
    GenerationConfig g = pipe.generation();
    std::vector<std::string> keys{"early_stopping"};
    GenerationConfig::visit_fields(g, [&](auto&, const char* key, auto...) { keys.emplace_back(key); });
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : options) {
        const std::string key = py::str(k);
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
            std::string known;
            for (const std::string& name : keys) known += (known.empty() ? "" : ", ") + name;
            detail::fail("ask(): unknown decoding option '", key, "' (known: ", known, ")");
        }
        if (py::isinstance<py::bool_>(v)) j[key] = v.cast<bool>();
        else if (py::isinstance<py::int_>(v)) j[key] = v.cast<int64_t>();
        else if (py::isinstance<py::float_>(v)) j[key] = v.cast<double>();
        else if (py::isinstance<py::str>(v)) j[key] = v.cast<std::string>();
        else detail::fail("ask(): decoding option '", key, "' is ", py::repr(v).cast<std::string>(), ", not a number, bool or string");
    }
    return generation_from_json(j, "ask()", g);
}

py::dict timings(const Answer::Times& t) {
    py::dict d;
    d["preprocess_ms"] = t.preprocess_ms;
    d["encoder_ms"] = t.encoder_ms;
    d["cross_kv_ms"] = t.cross_kv_ms;
    d["decode_ms"] = t.decode_ms;
    d["token_ms"] = t.token_ms;
    return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "pix2struct.cpp's C++ pipeline (use the pix2struct_cpp package)";
    m.attr("__version__") = PIX2STRUCT_VERSION;
    py::register_exception<Error>(m, "Error", PyExc_RuntimeError);

    py::class_<Image>(m, "Image", "An 8-bit RGB image as the reference sees it")
        .def_static("load", [](const std::filesystem::path& path) { py::gil_scoped_release free; return load_image(path); },
                    "Decodes an image file (JPEG, PNG, GIF, WebP, BMP) as Pillow's open + convert('RGB')")
        .def_static("decode", [](py::bytes data, const std::string& name) {
                        const std::string_view bytes = data;
                        py::gil_scoped_release free;
                        return load_image_from_memory(std::as_bytes(std::span(bytes.data(), bytes.size())), name);
                    }, py::arg("data"), py::arg("name") = "<bytes>", "Decodes an image file's bytes")
        .def_static("from_array", &image_from_buffer, "Copies an HxWx3 uint8 array (buffer protocol)")
        .def_readonly("width", &Image::width)
        .def_readonly("height", &Image::height);

    py::class_<Sequence>(m, "Sequence", "A beam returned by beam search")
        .def_readonly("text", &Sequence::text)
        .def_readonly("ids", &Sequence::ids)
        .def_readonly("score", &Sequence::score)
        .def("__repr__", [](const Sequence& s) { return "Sequence(text=" + py::repr(py::str(s.text)).cast<std::string>() +
                                                        ", score=" + std::to_string(s.score) + ")"; });

    py::class_<Answer>(m, "Answer", "An answer: text, token ids, timings")
        .def_readonly("text", &Answer::text)
        .def_readonly("ids", &Answer::ids)
        .def_readonly("real_patches", &Answer::real_patches)
        .def_readonly("sequences", &Answer::sequences)
        .def_property_readonly("timings", [](const Answer& a) { return timings(a.times); })
        .def("__repr__", [](const Answer& a) { return "Answer(text=" + py::repr(py::str(a.text)).cast<std::string>() +
                                                      ", ids=" + py::repr(py::cast(a.ids)).cast<std::string>() + ")"; });

    py::class_<Choice>(m, "Choice", "A candidate answer and its log-likelihood")
        .def_readonly("text", &Choice::text)
        .def_readonly("ids", &Choice::ids)
        .def_readonly("logprob", &Choice::logprob)
        .def_readonly("mean_logprob", &Choice::mean_logprob)
        .def_readonly("prob", &Choice::prob)
        .def("__repr__", [](const Choice& c) { return "Choice(text=" + py::repr(py::str(c.text)).cast<std::string>() +
                                                      ", prob=" + std::to_string(c.prob) + ")"; });

    py::class_<Pipeline>(m, "Pipeline")
        .def(py::init([](const std::string& model, int threads, const std::string& dtype, int max_patches,
                         const std::string& font, bool mmap, int64_t max_memory_bytes, bool offline) {
                 const PipelineOptions options{.threads = threads, .max_patches = max_patches, .dtype = dtype_from_name(dtype),
                                               .font_path = font, .mmap = mmap, .max_memory_bytes = max_memory_bytes};
                 py::gil_scoped_release free;
                 return Pipeline::load(hub::resolve_model(model, {.offline = offline}), options);
             }),
             py::arg("model"), py::arg("threads") = 0, py::arg("dtype") = "f32", py::arg("max_patches") = 0,
             py::arg("font") = "", py::arg("mmap") = true, py::arg("max_memory_bytes") = 0, py::arg("offline") = false)
        .def("ask",
             [](Pipeline& pipe, const Image& image, const std::string& question, int max_new_tokens,
                std::optional<std::function<bool(std::string_view)>> on_text, const py::kwargs& decoding) {
                 AskOptions options{.max_new_tokens = max_new_tokens, .generation = generation(pipe, decoding)};
                 // The callback runs on this thread with the GIL taken back; an exception it raises stops the
                 // answer and is raised again here.
                 std::optional<py::error_already_set> raised;
                 if (on_text)
                     options.on_text = [&](std::string_view piece) {
                         py::gil_scoped_acquire hold;
                         try {
                             return (*on_text)(piece);
                         } catch (py::error_already_set& e) {
                             raised = std::move(e);
                             return false;
                         }
                     };
                 Answer a;
                 {
                     py::gil_scoped_release free;
                     a = pipe.ask(image, question, options);
                 }
                 if (raised) throw std::move(*raised);
                 return a;
             },
             py::arg("image"), py::arg("question") = "", py::arg("max_new_tokens") = 0, py::arg("on_text") = py::none())
        .def("ask_batch",
             [](Pipeline& pipe, const std::vector<Image>& images, const std::vector<std::string>& questions, int max_new_tokens) {
                 py::gil_scoped_release free;
                 return pipe.ask_batch(images, questions, max_new_tokens);
             },
             py::arg("images"), py::arg("questions"), py::arg("max_new_tokens") = 0)
        .def("score",
             [](Pipeline& pipe, const Image& image, const std::string& question, const std::vector<std::string>& candidates,
                bool with_eos) {
                 py::gil_scoped_release free;
                 return pipe.score(image, question, candidates, {.with_eos = with_eos});
             },
             py::arg("image"), py::arg("question"), py::arg("candidates"), py::arg("with_eos") = true)
        .def_property_readonly("is_vqa", &Pipeline::is_vqa)
        .def_property_readonly("max_patches", &Pipeline::max_patches)
        .def_property_readonly("generation_json", [](const Pipeline& pipe) { return to_json(pipe.generation()).dump(); })
        .def("describe", &Pipeline::describe);
}
