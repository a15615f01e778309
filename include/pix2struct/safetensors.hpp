// pix2struct/safetensors.hpp — a strict, zero-copy reader and a writer for the safetensors format.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [768, 768], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string value"}}
// then the data section; offsets are relative to its start, and the tensors must tile it exactly.
//
//   auto file = pix2struct::SafetensorsFile::open("model.safetensors");   // throws pix2struct::Error
//   const pix2struct::TensorView& t = file.at("decoder.lm_head.weight");
//   t.dtype, t.shape, t.bytes (a span into the mapped file), t.to_float() (F16/BF16/F32 → float)
//
// Every malformed input is rejected with an Error naming the file, the tensor and the problem; the
// reader never touches a byte outside the mapping.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <unordered_set>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/read_file.hpp"

namespace pix2struct {

enum class DType { BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64 };

// Size in bytes of one element.
inline constexpr size_t dtype_size(DType t) {
    switch (t) {
        case DType::BOOL: case DType::U8: case DType::I8: return 1;
        case DType::I16: case DType::F16: case DType::BF16: return 2;
        case DType::I32: case DType::F32: return 4;
        case DType::I64: case DType::F64: return 8;
    }
    return 0;
}

inline constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::BOOL: return "BOOL"; case DType::U8: return "U8"; case DType::I8: return "I8";
        case DType::I16: return "I16"; case DType::I32: return "I32"; case DType::I64: return "I64";
        case DType::F16: return "F16"; case DType::BF16: return "BF16"; case DType::F32: return "F32";
        case DType::F64: return "F64";
    }
    return "?";
}

// Returns false for a name the format does not define (or that we do not read, e.g. F8_E4M3).
inline bool parse_dtype(std::string_view s, DType& out) {
    for (DType t : {DType::BOOL, DType::U8, DType::I8, DType::I16, DType::I32, DType::I64, DType::F16,
                    DType::BF16, DType::F32, DType::F64})
        if (dtype_name(t) == s) { out = t; return true; }
    return false;
}

// ---- scalar conversions ---------------------------------------------------------------------
inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

// Round to nearest even, as torch's `tensor.to(torch.bfloat16)`; NaN stays a (quiet) NaN.
inline uint16_t float_to_bf16(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

inline float f16_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {  // zero or subnormal: mant · 2^-24
        float v = float(mant) * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// "[768, 2048]", as error messages print shapes.
inline std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---- a view of one stored tensor ------------------------------------------------------------
struct TensorView {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::span<const std::byte> bytes;  // into the mapped file: no copy

    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }

    // Converts F16, BF16 or F32 elements to float; `dst` holds numel() floats.
    void to_float(float* dst) const {
        const int64_t n = numel();
        const std::byte* src = bytes.data();
        switch (dtype) {
            case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
            case DType::BF16: return widen_halves(src, n, dst, bf16_to_float);
            case DType::F16: return widen_halves(src, n, dst, f16_to_float);
            default:
                detail::fail("tensor '", name, "': dtype ", dtype_name(dtype),
                             " cannot be converted to float (expected F16, BF16 or F32)");
        }
    }
    std::vector<float> to_float() const {
        std::vector<float> out(static_cast<size_t>(numel()));
        to_float(out.data());
        return out;
    }

private:
    // 16-bit elements (possibly unaligned in the mapping) → float through `widen`.
    template <class Widen>
    static void widen_halves(const std::byte* src, int64_t n, float* dst, Widen widen) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = widen(h);
        }
    }
};

namespace detail {

// A SAX handler that notes the first duplicate key of the top-level object (linear time).
struct TopLevelKeys {
    using json = nlohmann::json;
    int depth = 0;
    std::unordered_set<std::string> seen;
    std::string duplicate;
    bool null() { return true; }
    bool boolean(bool) { return true; }
    bool number_integer(json::number_integer_t) { return true; }
    bool number_unsigned(json::number_unsigned_t) { return true; }
    bool number_float(json::number_float_t, const json::string_t&) { return true; }
    bool string(json::string_t&) { return true; }
    bool binary(json::binary_t&) { return true; }
    bool start_object(std::size_t) { return ++depth, true; }
    bool end_object() { return --depth, true; }
    bool start_array(std::size_t) { return ++depth, true; }
    bool end_array() { return --depth, true; }
    bool key(json::string_t& k) {
        if (depth == 1 && duplicate.empty() && !seen.insert(k).second) duplicate = k;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const json::exception& e) { throw e; }
};

// A read-only memory mapping of a whole file, closed on destruction.
class MappedFile {
public:
    explicit MappedFile(const std::filesystem::path& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(path.string(), ": cannot open: ", std::strerror(errno));
        struct stat st{};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            fail(path.string(), ": cannot stat: ", std::strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            fail(path.string(), ": not a regular file");
        }
        size_ = size_t(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                fail(path.string(), ": cannot map: ", std::strerror(e));
            }
            data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    }
    std::span<const std::byte> bytes() const { return {data_, size_}; }

private:
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
};

inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

}  // namespace detail

// ---- the reader -----------------------------------------------------------------------------
class SafetensorsFile {
public:
    static SafetensorsFile open(const std::filesystem::path& path) {
        SafetensorsFile f;
        f.path_ = path;
        f.map_ = std::make_unique<detail::MappedFile>(path);
        f.bytes_ = f.map_->bytes();
        f.parse();
        return f;
    }

    // The file read whole into memory instead of mapped: later changes to the file (truncated, rewritten
    // in place) cannot reach the loaded tensors, at the cost of the file's size in private memory.
    static SafetensorsFile read(const std::filesystem::path& path) {
        return from_memory(detail::read_whole_file(path, "the safetensors file"), path);
    }

    // The same from bytes in memory (a file read whole, a network buffer, a fuzzer's input); `name` stands
    // for the path in error messages. The tensors point into `bytes`, which the object keeps.
    static SafetensorsFile from_memory(std::vector<std::byte> bytes, const std::filesystem::path& name) {
        SafetensorsFile f;
        f.path_ = name;
        f.owned_ = std::make_unique<std::vector<std::byte>>(std::move(bytes));
        f.bytes_ = *f.owned_;
        f.parse();
        return f;
    }

    const std::filesystem::path& path() const { return path_; }
    const std::vector<TensorView>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    const TensorView* find(std::string_view name) const {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    const TensorView& at(std::string_view name) const {
        if (const TensorView* t = find(name)) return *t;
        detail::fail(path_.string(), ": no tensor named '", name, "'");
    }

private:
    [[noreturn]] void bad(const auto&... parts) const { detail::fail(path_.string(), ": ", parts...); }

    void parse() {
        const std::span<const std::byte> file = bytes_;
        if (file.size() < 8) bad("file is ", file.size(), " bytes, too short for the 8-byte header length");
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(file[size_t(i)]);
        if (n > detail::kMaxSafetensorsHeader)
            bad("header length ", n, " exceeds the limit of ", detail::kMaxSafetensorsHeader, " bytes");
        if (n > file.size() - 8) bad("header length ", n, " is larger than the ", file.size() - 8, " bytes after it");
        const auto* text = reinterpret_cast<const char*>(file.data() + 8);
        const std::span<const std::byte> data = file.subspan(8 + size_t(n));

        // Parse, rejecting duplicate top-level names (nlohmann keeps the last one silently). The names are
        // checked in a separate SAX pass: a parse callback would make nlohmann rescan the top-level object
        // after every entry (quadratic in the number of tensors).
        nlohmann::json header;
        std::string duplicate;
        try {
            detail::TopLevelKeys keys;
            nlohmann::json::sax_parse(text, text + n, &keys);
            duplicate = keys.duplicate;
            header = nlohmann::json::parse(text, text + n);
        } catch (const nlohmann::json::exception& e) {
            bad("header is not valid JSON (", e.what(), ")");
        }
        if (!duplicate.empty()) bad("tensor '", duplicate, "' appears twice in the header");
        if (!header.is_object()) bad("header is not a JSON object");

        struct Range { uint64_t begin, end; size_t index; };
        std::vector<Range> ranges;
        for (auto& item : header.items()) {
            const std::string& name = item.key();  // not a structured binding: lambdas below capture it
            auto& entry = item.value();
            if (name == "__metadata__") {
                if (!entry.is_object()) bad("__metadata__ is not an object");
                for (auto& [k, v] : entry.items()) {
                    if (!v.is_string()) bad("__metadata__ value of '", k, "' is not a string");
                    metadata_[k] = v.get<std::string>();
                }
                continue;
            }
            auto tbad = [&](const auto&... parts) { bad("tensor '", name, "': ", parts...); };
            if (!entry.is_object()) tbad("entry is not an object");
            for (auto& [k, v] : entry.items())
                if (k != "dtype" && k != "shape" && k != "data_offsets") tbad("unexpected key '", k, "'");
            if (!entry.contains("dtype") || !entry["dtype"].is_string()) tbad("missing or non-string dtype");
            if (!entry.contains("shape") || !entry["shape"].is_array()) tbad("missing or non-array shape");
            if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
                entry["data_offsets"].size() != 2)
                tbad("data_offsets must be an array of two integers");

            TensorView t;
            t.name = name;
            const auto dtype = entry["dtype"].get<std::string>();
            if (!parse_dtype(dtype, t.dtype)) tbad("unknown dtype '", dtype, "'");
            uint64_t count = 1;
            bool overflow = false;
            for (const auto& d : entry["shape"]) {
                if (!d.is_number_unsigned()) tbad("shape has a non-integer or negative dimension");
                const uint64_t dim = d.get<uint64_t>();
                if (dim != 0 && count > (uint64_t(1) << 56) / dim) overflow = true;
                count *= dim;
                t.shape.push_back(int64_t(dim));
            }
            if (overflow) tbad("shape is too large");
            uint64_t off[2];
            for (int i = 0; i < 2; ++i) {
                const auto& o = entry["data_offsets"][size_t(i)];
                if (!o.is_number_unsigned()) tbad("data_offsets must be non-negative integers");
                off[i] = o.get<uint64_t>();
            }
            if (off[1] < off[0]) tbad("data_offsets [", off[0], ", ", off[1], "] end before they begin");
            if (off[1] > data.size())
                tbad("data_offsets [", off[0], ", ", off[1], "] run past the data section of ", data.size(), " bytes");
            const uint64_t need = count * dtype_size(t.dtype);
            if (need != off[1] - off[0])
                tbad("shape ", shape_string(t.shape), " of ", dtype, " needs ", need, " bytes but data_offsets hold ",
                     off[1] - off[0]);
            t.bytes = data.subspan(size_t(off[0]), size_t(off[1] - off[0]));
            ranges.push_back({off[0], off[1], tensors_.size()});
            tensors_.push_back(std::move(t));
        }

        // The tensors must tile the data section: no overlap, no hole, nothing after the last one.
        std::sort(ranges.begin(), ranges.end(),
                  [](const Range& a, const Range& b) { return std::pair(a.begin, a.end) < std::pair(b.begin, b.end); });
        uint64_t pos = 0;
        for (const Range& r : ranges) {
            const std::string& name = tensors_[r.index].name;
            if (r.begin < pos) bad("tensor '", name, "' overlaps the tensor before it (starts at ", r.begin, ", previous ends at ", pos, ")");
            if (r.begin > pos) bad("hole of ", r.begin - pos, " bytes in the data section before tensor '", name, "'");
            pos = r.end;
        }
        if (pos != data.size()) bad(data.size() - pos, " bytes after the last tensor are not covered by any tensor");

        for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    }

    std::filesystem::path path_;
    std::unique_ptr<detail::MappedFile> map_;             // open(): the mapped file
    std::unique_ptr<std::vector<std::byte>> owned_;       // from_memory(): the bytes
    std::span<const std::byte> bytes_;                    // either
    std::vector<TensorView> tensors_;
    std::map<std::string, size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
};

// ---- the writer -----------------------------------------------------------------------------
class SafetensorsWriter {
public:
    void add(std::string name, DType dtype, std::vector<int64_t> shape, std::span<const std::byte> bytes) {
        int64_t count = 1;
        for (int64_t d : shape) {
            if (d < 0) detail::fail("safetensors writer: tensor '", name, "' has a negative dimension");
            count *= d;
        }
        if (size_t(count) * dtype_size(dtype) != bytes.size())
            detail::fail("safetensors writer: tensor '", name, "': shape ", shape_string(shape),
                         " of ", dtype_name(dtype), " needs ", size_t(count) * dtype_size(dtype), " bytes, got ",
                         bytes.size());
        for (const Entry& e : entries_)
            if (e.name == name) detail::fail("safetensors writer: tensor '", name, "' added twice");
        entries_.push_back({std::move(name), dtype, std::move(shape), {bytes.begin(), bytes.end()}});
    }
    void add_f32(std::string name, std::vector<int64_t> shape, std::span<const float> v) {
        add(std::move(name), DType::F32, std::move(shape), std::as_bytes(v));
    }
    void add_bf16(std::string name, std::vector<int64_t> shape, std::span<const float> v) {
        std::vector<uint16_t> h(v.size());
        for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
        add(std::move(name), DType::BF16, std::move(shape), std::as_bytes(std::span<const uint16_t>(h)));
    }
    void add_i64(std::string name, std::vector<int64_t> shape, std::span<const int64_t> v) {
        add(std::move(name), DType::I64, std::move(shape), std::as_bytes(v));
    }
    void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

    void write(const std::filesystem::path& path) const {
        nlohmann::json header = nlohmann::json::object();
        if (!metadata_.empty()) header["__metadata__"] = metadata_;
        uint64_t offset = 0;
        for (const Entry& e : entries_) {
            header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape},
                              {"data_offsets", {offset, offset + e.bytes.size()}}};
            offset += e.bytes.size();
        }
        std::string text = header.dump();
        text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
        std::ofstream out(path, std::ios::binary);
        if (!out) detail::fail(path.string(), ": cannot open for writing");
        unsigned char len[8];
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));
        out.write(reinterpret_cast<const char*>(len), 8);
        out.write(text.data(), std::streamsize(text.size()));
        for (const Entry& e : entries_) out.write(reinterpret_cast<const char*>(e.bytes.data()), std::streamsize(e.bytes.size()));
        if (!out.flush()) detail::fail(path.string(), ": write failed");
    }

private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        std::vector<std::byte> bytes;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace pix2struct
