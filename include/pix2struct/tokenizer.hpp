// pix2struct/tokenizer.hpp — the T5-style SentencePiece tokenizer of Pix2Struct checkpoints.
//
//   auto tok = pix2struct::Tokenizer::load("model/");          // spiece.model (+ tokenizer_config.json)
//   std::string text = tok.decode(ids);                         // == HF T5Tokenizer.decode(ids, skip_special_tokens=True)
//   std::vector<int64_t> ids = tok.encode("a question");        // == HF T5Tokenizer.encode(text): pieces + </s>
//
// Throws pix2struct::Error when spiece.model is missing or unreadable.
//
// What HF's slow T5Tokenizer (transformers 4.57, legacy mode) does, and we mirror:
// - Special ids: pad 0, eos 1, unk 2 and the `extra_ids` (default 100) sentinel tokens appended after the
//   SentencePiece vocabulary (<extra_id_0> is the LAST id). skip_special_tokens drops all of them —
//   including <unk>. Ids past the tokenizer's size (a model vocab may be padded, e.g. 50244) are dropped too
//   (HF would raise).
// - convert_tokens_to_string: with add_prefix_space (default true) the first piece loses a leading '▁';
//   the pieces are decoded by SentencePiece, then the string is strip()ped of surrounding whitespace.
// - clean_up_tokenization_spaces (tokenizer_config.json; default false in 4.57) rewrites " ." → "." etc.
// - encode: SentencePiece pieces of the text, then </s>. Special-token strings inside the text ("</s>")
//   are not split out (HF would); questions do not contain them.
#pragma once

#include <sentencepiece_processor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pix2struct/config.hpp"
#include "pix2struct/error.hpp"

namespace pix2struct {

class Tokenizer {
public:
    // `path` is a model folder (spiece.model, optional tokenizer_config.json) or a .model file.
    static Tokenizer load(const std::filesystem::path& path) {
        std::filesystem::path model = path, config;
        if (std::filesystem::is_directory(path)) {
            model = path / "spiece.model";
            config = path / "tokenizer_config.json";
        }
        if (!std::filesystem::exists(model))
            detail::fail(model.string(), ": tokenizer model not found (a Pix2Struct checkpoint ships spiece.model)");
        Tokenizer t;
        t.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
        const auto status = t.sp_->Load(model.string());
        if (!status.ok()) detail::fail(model.string(), ": not a readable SentencePiece model (", status.ToString(), ")");
        if (!config.empty() && std::filesystem::exists(config)) {
            const nlohmann::json j = detail::read_json_file(config);
            detail::read_key(j, "extra_ids", t.extra_ids_, config.string());
            detail::read_key(j, "add_prefix_space", t.add_prefix_space_, config.string());
            detail::read_key(j, "clean_up_tokenization_spaces", t.clean_up_spaces_, config.string());
        }
        return t;
    }

    int64_t pieces() const { return sp_->GetPieceSize(); }
    int64_t size() const { return pieces() + extra_ids_; }  // len(tokenizer)
    int64_t pad_id() const { return 0; }
    int64_t eos_id() const { return 1; }
    int64_t unk_id() const { return 2; }

    bool is_special(int64_t id) const {
        return id == pad_id() || id == eos_id() || id == unk_id() || id >= pieces() || id < 0;
    }

    // HF: tokenizer.decode(ids, skip_special_tokens=True)
    std::string decode(const std::vector<int64_t>& ids) const {
        std::vector<std::string> tokens;
        for (int64_t id : ids)
            if (!is_special(id)) tokens.push_back(sp_->IdToPiece(int(id)));
        if (tokens.empty()) return "";
        // if tokens[0].startswith(SPIECE_UNDERLINE) and self.add_prefix_space: tokens[0] = tokens[0][1:]
        static constexpr std::string_view underline = "\xE2\x96\x81";  // '▁'
        if (add_prefix_space_ && tokens[0].starts_with(underline)) tokens[0].erase(0, underline.size());
        std::string text;
        sp_->Decode(tokens, &text);
        text = strip(text);
        if (clean_up_spaces_) text = clean_up_tokenization(text);
        return text;
    }

    // HF: tokenizer.encode(text) (adds </s>)
    std::vector<int64_t> encode(std::string_view text) const {
        std::vector<int> ids;
        sp_->Encode(std::string(text), &ids);
        std::vector<int64_t> out(ids.begin(), ids.end());
        out.push_back(eos_id());
        return out;
    }

private:
    // Python's str.strip(): ASCII whitespace and the Unicode spaces SentencePiece can produce.
    static std::string strip(const std::string& s) {
        auto is_space_at = [&](size_t i, size_t& len) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) { len = 1; return true; }
            // U+0085, U+00A0 (2 bytes); U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (3 bytes)
            if (c == 0xC2 && i + 1 < s.size() && (uint8_t(s[i + 1]) == 0x85 || uint8_t(s[i + 1]) == 0xA0)) { len = 2; return true; }
            if (i + 2 < s.size()) {
                const uint8_t b1 = uint8_t(s[i + 1]), b2 = uint8_t(s[i + 2]);
                if ((c == 0xE1 && b1 == 0x9A && b2 == 0x80) || (c == 0xE2 && b1 == 0x80 && (b2 <= 0x8A || b2 == 0xA8 || b2 == 0xA9 || b2 == 0xAF)) ||
                    (c == 0xE2 && b1 == 0x81 && b2 == 0x9F) || (c == 0xE3 && b1 == 0x80 && b2 == 0x80)) { len = 3; return true; }
            }
            return false;
        };
        size_t begin = 0, len = 0;
        while (begin < s.size() && is_space_at(begin, len)) begin += len;
        size_t end = s.size();
        while (end > begin) {  // scan back: find the start of the last code point
            size_t cp = end - 1;
            while (cp > begin && (uint8_t(s[cp]) & 0xC0) == 0x80) --cp;
            if (is_space_at(cp, len) && cp + len == end) end = cp;
            else break;
        }
        return s.substr(begin, end - begin);
    }

    static std::string clean_up_tokenization(std::string s) {
        static const std::pair<std::string_view, std::string_view> rules[] = {
            {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
            {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
        for (auto [from, to] : rules) {
            std::string out;
            size_t pos = 0;
            for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
                out.append(s, pos, hit - pos).append(to);
            out.append(s, pos);
            s = std::move(out);
        }
        return s;
    }

    std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
    int extra_ids_ = 100;
    bool add_prefix_space_ = true;
    bool clean_up_spaces_ = false;
};

}  // namespace pix2struct
