// pix2struct/hub.hpp — checkpoints by name: the Hugging Face cache, read in place and filled as
// huggingface_hub fills it. Needs libcurl and OpenSSL's libcrypto (link CURL::libcurl OpenSSL::Crypto, or
// `pkg-config --libs libcurl libcrypto`); the rest of the library does not.
//
//   std::filesystem::path dir = pix2struct::hub::resolve_model("google/pix2struct-ai2d-base");   // or a folder
//   auto pipe = pix2struct::Pipeline::load(dir);
//
// A model named `owner/name[@revision]` (that is not an existing folder) is looked up as huggingface_hub
// does: the cache is HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub; the repo's folder is models--owner--name, refs/<revision> holds the commit,
// snapshots/<commit>/<file> are symlinks into blobs/<etag>. The files are used where they are (the weights
// are memory-mapped through the symlink: no copy), so a checkpoint transformers downloaded is ours too.
//
// Missing files are downloaded into the same layout, so transformers sees them as well: for each file a HEAD
// of $HF_ENDPOINT/<repo>/resolve/<revision>/<file> (relative redirects followed: renamed repos) gives the
// commit (X-Repo-Commit), the blob's etag (X-Linked-Etag for LFS files, else ETag) and size (X-Linked-Size,
// else Content-Length) and, for LFS files, the storage URL (Location); the body goes to
// blobs/<etag>.incomplete, resumed with a Range request after a dropped connection (in the same run, up to
// 5 tries, or in the next run), then checked (its size; an LFS file's sha256 against its etag: a corrupt
// download is deleted and refused), renamed to blobs/<etag> and linked from the snapshot; refs/<revision>
// records the commit. An optional file the repo lacks (generation_config.json) is remembered as
// .no_exist/<commit>/<file>, as huggingface_hub does. HF_TOKEN (else $HF_HOME/token) is sent as a bearer
// token to the endpoint (gated and private repos); HF_HUB_OFFLINE=1 or Options::offline never touches the
// network, and a file the cache lacks is then an Error naming the repo, the revision and the file.
#pragma once

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/read_file.hpp"

namespace pix2struct::hub {

struct Options {
    std::filesystem::path cache{};  // empty: the environment's (cache_dir())
    std::string endpoint{};         // empty: $HF_ENDPOINT, else https://huggingface.co
    std::string token{};            // empty: $HF_TOKEN, else the file $HF_HOME/token
    bool offline = false;           // also when HF_HUB_OFFLINE is 1/true/yes/on
    bool progress = true;           // a progress bar on stderr when it is a terminal
    // What a checkpoint needs, and what it may have.
    std::vector<std::string> files{"config.json", "preprocessor_config.json", "model.safetensors", "spiece.model"};
    std::vector<std::string> optional_files{"generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                                            "added_tokens.json"};
};

struct RepoRef {
    std::string repo;                // owner/name
    std::string revision = "main";   // a branch, a tag or a commit
};

namespace detail {

inline std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}
inline std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}
inline bool env_true(const char* name) {
    const std::string v = lower(env(name));
    return v == "1" || v == "true" || v == "yes" || v == "on";
}
// `digits` hexadecimal digits: a commit (40) or an LFS file's sha256 etag (64).
inline bool is_hex(std::string_view s, size_t digits) {
    return s.size() == digits && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}
inline bool is_commit(std::string_view s) { return is_hex(s, 40); }
// A small text file of the cache (refs/<revision>, the token), trailing whitespace dropped; bounded.
inline std::string read_text(const std::filesystem::path& p, std::string_view what) {
    const std::vector<std::byte> bytes = pix2struct::detail::read_whole_file(p, what, 64 << 10);
    std::string s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
}
inline void write_text(const std::filesystem::path& p, const std::string& s) {
    const std::filesystem::path tmp = p.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << s;
        if (!out) pix2struct::detail::fail(p.string(), ": cannot write it");
    }
    std::filesystem::rename(tmp, p);
}
// Percent-encodes all but unreserved characters (a revision such as refs/pr/3 becomes refs%2Fpr%2F3).
inline std::string quote(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += char(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}
inline std::string sha256_of(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 20);
    while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        EVP_DigestUpdate(ctx, buf.data(), size_t(in.gcount()));
    }
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    for (unsigned i = 0; i < n; ++i) {
        char b[3];
        std::snprintf(b, sizeof b, "%02x", md[i]);
        hex += b;
    }
    return hex;
}

// One libcurl request: status, headers (names in lower case), body into `sink` (or nothing).
struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;
    CURLcode code = CURLE_OK;
    std::string error;
    std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

class Http {
public:
    using Sink = std::function<bool(const char*, size_t)>;
    using Progress = std::function<void(int64_t)>;

    explicit Http(std::string token) : token_(std::move(token)) {
        static const bool init = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
        if (!init) pix2struct::detail::fail("libcurl: cannot initialise");
    }
    // HEAD without following redirects (an LFS file's Location is its storage URL).
    Response head(const std::string& url, bool authorize) { return perform(url, true, authorize, 0, {}, {}); }
    // GET from byte `offset` on, following redirects; a 2xx body goes to `sink` (false: stop).
    Response get(const std::string& url, bool authorize, int64_t offset, const Sink& sink, const Progress& progress) {
        return perform(url, false, authorize, offset, sink, progress);
    }

private:
    struct Transfer {
        Response response;
        const Sink* sink = nullptr;
        const Progress* progress = nullptr;
        int64_t received = 0;
    };
    // Each response's status line, then its headers (a redirect's give way to the next response's).
    static size_t on_header(char* data, size_t size, size_t n, void* user) {
        Response& r = static_cast<Transfer*>(user)->response;
        const std::string line(data, size * n);
        if (line.rfind("HTTP/", 0) == 0) {
            r.headers.clear();
            const size_t sp = line.find(' ');
            r.status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
            return size * n;
        }
        const size_t colon = line.find(':');
        if (colon != std::string::npos) {
            const std::string name = lower(line.substr(0, colon)), value = line.substr(colon + 1);
            const size_t b = value.find_first_not_of(" \t"), e = value.find_last_not_of(" \t\r\n");
            r.headers[name] = b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
        }
        return size * n;
    }
    // The body of a 2xx response goes to the sink; an error page is dropped.
    static size_t on_body(char* data, size_t size, size_t n, void* user) {
        Transfer& t = *static_cast<Transfer*>(user);
        if (t.response.status < 200 || t.response.status >= 300 || !t.sink || !*t.sink) return size * n;
        if (!(*t.sink)(data, size * n)) return 0;
        t.received += int64_t(size * n);
        if (t.progress && *t.progress) (*t.progress)(t.received);
        return size * n;
    }
    Response perform(const std::string& url, bool head, bool authorize, int64_t offset, const Sink& sink, const Progress& progress) {
        Transfer t{{}, &sink, &progress};
        CURL* c = curl_easy_init();
        if (!c) pix2struct::detail::fail("libcurl: cannot make a handle");
        curl_slist* headers = curl_slist_append(nullptr, "Accept-Encoding: identity");
        const std::string auth = "Authorization: Bearer " + token_;  // libcurl sends it to this host only
        if (authorize && !token_.empty()) headers = curl_slist_append(headers, auth.c_str());
        const std::string range = std::to_string(offset) + "-";
        char error[CURL_ERROR_SIZE] = {};
        curl_easy_setopt(c, CURLOPT_URL, url.c_str());
        curl_easy_setopt(c, CURLOPT_USERAGENT, "pix2struct.cpp");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled transfer ends after 60 s
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        if (head) {
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else {
            curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
            if (offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
        }
        t.response.code = curl_easy_perform(c);
        if (t.response.code != CURLE_OK) t.response.error = error[0] ? error : curl_easy_strerror(t.response.code);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        return t.response;
    }

    std::string token_;
};

}  // namespace detail

// `owner/name` or `owner/name@revision`; nullopt for anything else (a path, a bare name).
inline std::optional<RepoRef> parse_repo_id(std::string_view spec) {
    RepoRef r;
    const size_t at = spec.find('@');
    std::string_view repo = spec.substr(0, at);
    if (at != std::string_view::npos) {
        r.revision = std::string(spec.substr(at + 1));
        if (r.revision.empty()) return std::nullopt;
    }
    const size_t slash = repo.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == repo.size() || repo.find('/', slash + 1) != std::string_view::npos)
        return std::nullopt;
    for (char c : repo)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return std::nullopt;
    if (repo.find("..") != std::string_view::npos || repo.front() == '.' || repo.back() == '.') return std::nullopt;
    r.repo = std::string(repo);
    return r;
}

// The hub cache huggingface_hub uses: HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub.
inline std::filesystem::path cache_dir() {
    if (std::string v = detail::env("HF_HUB_CACHE"); !v.empty()) return v;
    if (std::string v = detail::env("HF_HOME"); !v.empty()) return std::filesystem::path(v) / "hub";
    if (std::string v = detail::env("XDG_CACHE_HOME"); !v.empty()) return std::filesystem::path(v) / "huggingface" / "hub";
    return std::filesystem::path(detail::env("HOME")) / ".cache" / "huggingface" / "hub";
}

namespace detail {

class Snapshot {
public:
    Snapshot(const RepoRef& ref, const Options& o) : ref_(ref), o_(o) {
        if (o_.cache.empty()) o_.cache = cache_dir();
        if (o_.endpoint.empty()) o_.endpoint = env("HF_ENDPOINT");
        if (o_.endpoint.empty()) o_.endpoint = "https://huggingface.co";
        while (!o_.endpoint.empty() && o_.endpoint.back() == '/') o_.endpoint.pop_back();
        if (o_.token.empty()) o_.token = env("HF_TOKEN");
        if (o_.token.empty()) {
            const std::string home = env("HF_HOME");
            const std::filesystem::path file = home.empty() ? std::filesystem::path(env("HOME")) / ".cache" / "huggingface" / "token"
                                                            : std::filesystem::path(home) / "token";
            std::error_code ec;
            if (std::filesystem::is_regular_file(file, ec)) o_.token = read_text(file, "the Hugging Face token file");
        }
        o_.offline = o_.offline || env_true("HF_HUB_OFFLINE");
        std::string folder = "models--" + ref.repo;
        folder.replace(folder.find('/'), 1, "--");
        root_ = o_.cache / folder;
    }

    std::filesystem::path resolve() {
        std::optional<std::string> commit = cached_commit();
        if (commit && complete(*commit)) return root_ / "snapshots" / *commit;
        if (o_.offline)
            fail_offline(commit ? missing(*commit) : o_.files.front(), commit.has_value());
        Http http(o_.token);
        std::string resolved;
        for (const std::string& f : o_.files) fetch(http, f, false, resolved);
        for (const std::string& f : o_.optional_files) fetch(http, f, true, resolved);
        if (!is_commit(ref_.revision)) {
            std::filesystem::create_directories(root_ / "refs" / std::filesystem::path(ref_.revision).parent_path());
            write_text(root_ / "refs" / ref_.revision, resolved);
        }
        return root_ / "snapshots" / resolved;
    }

private:
    std::string where() const { return ref_.repo + "@" + ref_.revision; }
    std::optional<std::string> cached_commit() const {
        if (is_commit(ref_.revision)) return ref_.revision;
        const std::filesystem::path ref = root_ / "refs" / ref_.revision;
        std::error_code ec;
        if (!std::filesystem::is_regular_file(ref, ec)) return std::nullopt;
        std::string c = read_text(ref, "the revision's ref");
        if (!is_commit(c)) pix2struct::detail::fail(ref.string(), ": not a commit hash (a damaged hub cache?)");
        return c;
    }
    bool present(const std::string& commit, const std::string& file) const {
        std::error_code ec;
        return std::filesystem::is_regular_file(root_ / "snapshots" / commit / file, ec);  // follows the symlink
    }
    bool known_absent(const std::string& commit, const std::string& file) const {
        std::error_code ec;
        return std::filesystem::exists(root_ / ".no_exist" / commit / file, ec);
    }
    std::string missing(const std::string& commit) const {
        for (const std::string& f : o_.files)
            if (!present(commit, f)) return f;
        for (const std::string& f : o_.optional_files)
            if (!present(commit, f) && !known_absent(commit, f)) return f;
        return {};
    }
    bool complete(const std::string& commit) const { return missing(commit).empty(); }
    [[noreturn]] void fail_offline(const std::string& file, bool have_ref) const {
        pix2struct::detail::fail(where(), ": ", have_ref ? "'" + file + "' is not" : std::string("this revision is not"),
                                 " in the Hugging Face cache (", root_.string(), ") and the hub is offline (",
                                 o_.offline && env_true("HF_HUB_OFFLINE") ? "HF_HUB_OFFLINE" : "--offline",
                                 "): download it once online, or point --model at a folder");
    }

    void fetch(Http& http, const std::string& file, bool optional, std::string& resolved) {
        const std::string url = o_.endpoint + "/" + ref_.repo + "/resolve/" + quote(ref_.revision) + "/" + file;
        // metadata: follow relative redirects (a renamed repo) only
        std::string at = url;
        Response head;
        for (int hop = 0;; ++hop) {
            head = http.head(at, true);
            if (head.code != CURLE_OK)
                pix2struct::detail::fail(where(), ": cannot reach ", o_.endpoint, " for '", file, "': ", head.error,
                                         " (offline? HF_HUB_OFFLINE=1 uses the cache only)");
            const std::string location = head.header("location");
            if (head.status >= 300 && head.status < 400 && !location.empty() && location.front() == '/' && hop < 5) {
                const size_t scheme = o_.endpoint.find("://");
                const size_t host_end = o_.endpoint.find('/', scheme == std::string::npos ? 0 : scheme + 3);
                at = o_.endpoint.substr(0, host_end) + location;
                continue;
            }
            break;
        }
        if (head.status == 404 && optional) {
            const std::string commit = head.header("x-repo-commit");
            if (is_commit(commit)) {
                resolved = resolved.empty() ? commit : resolved;
                std::filesystem::create_directories(root_ / ".no_exist" / commit);
                std::ofstream(root_ / ".no_exist" / commit / file);
            }
            return;
        }
        if (head.status == 401 || head.status == 403)
            pix2struct::detail::fail(where(), ": '", file, "' needs access (HTTP ", head.status,
                                     "): a gated or private repo; set HF_TOKEN to a token that may read it");
        if (head.status == 404)
            pix2struct::detail::fail(where(), ": '", file, "' is not in the repo (HTTP 404)",
                                     file == "model.safetensors" ? " — this repo may publish only pytorch_model.bin; its "
                                                                   "safetensors may be on a refs/pr/N revision (--model repo@refs/pr/N)"
                                                                 : "");
        if (head.status >= 400 || head.status < 200)
            pix2struct::detail::fail(where(), ": '", file, "': HTTP ", head.status, " from ", o_.endpoint);
        const std::string commit = head.header("x-repo-commit");
        std::string etag = head.header("x-linked-etag");
        if (etag.empty()) etag = head.header("etag");
        if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
        etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
        if (!is_commit(commit) || etag.empty() || etag.find('/') != std::string::npos || etag.find("..") != std::string::npos)
            pix2struct::detail::fail(where(), ": '", file, "': the server sent no usable X-Repo-Commit / ETag (is ", o_.endpoint,
                                     " a Hugging Face hub?)");
        if (!resolved.empty() && resolved != commit)
            pix2struct::detail::fail(where(), ": the revision moved to another commit while downloading (", resolved, " then ",
                                     commit, "): run again");
        resolved = commit;
        std::string size_text = head.header("x-linked-size");
        if (size_text.empty()) size_text = head.header("content-length");
        const int64_t size = size_text.empty() ? -1 : std::strtoll(size_text.c_str(), nullptr, 10);
        const std::string location = head.header("location");
        const std::string source = head.status >= 300 && head.status < 400 && !location.empty() ? location : at;

        const std::filesystem::path blobs = root_ / "blobs", blob = blobs / etag;
        std::filesystem::create_directories(blobs);
        std::error_code ec;
        if (!std::filesystem::is_regular_file(blob, ec)) download(http, file, source, source == at, blob, size, etag);
        const std::filesystem::path link = root_ / "snapshots" / commit / file;
        std::filesystem::create_directories(link.parent_path());
        std::filesystem::remove(link, ec);
        std::filesystem::create_symlink(std::filesystem::path("..") / ".." / "blobs" / etag, link);
    }

    void download(Http& http, const std::string& file, const std::string& url, bool authorize,
                  const std::filesystem::path& blob, int64_t size, const std::string& etag) {
        const std::filesystem::path part = blob.string() + ".incomplete";
        const bool show = o_.progress && isatty(2);
        auto started = std::chrono::steady_clock::now();
        std::string last_error;
        for (int attempt = 0; attempt < 5; ++attempt) {
            std::error_code ec;
            int64_t have = std::filesystem::exists(part, ec) ? int64_t(std::filesystem::file_size(part, ec)) : 0;
            if (size >= 0 && have > size) {
                std::filesystem::remove(part, ec);
                have = 0;
            }
            if (size < 0 || have < size) {
                std::ofstream out(part, std::ios::binary | std::ios::app);
                if (!out) pix2struct::detail::fail(part.string(), ": cannot write the download");
                int64_t written = have;
                const Response r = http.get(
                    url, authorize, have,
                    [&](const char* data, size_t n) {
                        out.write(data, std::streamsize(n));
                        written += int64_t(n);
                        return bool(out);
                    },
                    [&](int64_t) {
                        if (!show) return;
                        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
                        std::fprintf(stderr, "\r  %s  %5.1f%%  %.1f / %.1f MB  %.1f MB/s ", file.c_str(),
                                     size > 0 ? 100.0 * double(written) / double(size) : 0.0, double(written) / 1e6,
                                     double(std::max<int64_t>(size, written)) / 1e6, double(written - have) / 1e6 / std::max(s, 1e-3));
                    });
                out.close();
                if (show) std::fprintf(stderr, "\n");
                if (r.status == 200 && have > 0) {  // the server ignored the Range: start over
                    std::filesystem::remove(part, ec);
                    last_error = "the server does not resume (no 206 for a Range request)";
                    continue;
                }
                if (r.status >= 400)
                    pix2struct::detail::fail(where(), ": '", file, "': HTTP ", r.status, " while downloading it");
                if (r.code != CURLE_OK) {  // dropped: resume from what arrived
                    last_error = r.error;
                    continue;
                }
            }
            const int64_t got = int64_t(std::filesystem::file_size(part, ec));
            if (size >= 0 && got != size) {
                last_error = "got " + std::to_string(got) + " bytes of " + std::to_string(size);
                if (got > size) std::filesystem::remove(part, ec);
                continue;
            }
            if (is_hex(etag, 64)) {  // an LFS file: its etag is its sha256
                const std::string want = lower(etag), sum = sha256_of(part);
                if (sum != want) {
                    std::filesystem::remove(part, ec);
                    pix2struct::detail::fail(where(), ": '", file, "' downloaded with sha256 ", sum,
                                             ", not the server's ", want, ": a corrupt download (deleted; run again)");
                }
            }
            std::filesystem::rename(part, blob);
            return;
        }
        pix2struct::detail::fail(where(), ": '", file, "' did not download after 5 tries (", last_error,
                                 "); what arrived is kept in ", part.string(), " and the next run resumes it");
    }

    RepoRef ref_;
    Options o_;
    std::filesystem::path root_;
};

}  // namespace detail

// The snapshot folder of a hub repo in the cache, with the checkpoint's files (downloaded if missing and not
// offline). Throws pix2struct::Error naming the repo, revision and file.
inline std::filesystem::path snapshot(const RepoRef& ref, const Options& options = {}) {
    return detail::Snapshot(ref, options).resolve();
}

// A --model argument: an existing folder as it is, else a hub repo id (owner/name[@revision]) through the cache.
inline std::filesystem::path resolve_model(const std::string& model, const Options& options = {}) {
    std::error_code ec;
    if (std::filesystem::exists(model, ec)) return model;
    if (const std::optional<RepoRef> ref = parse_repo_id(model)) return snapshot(*ref, options);
    pix2struct::detail::fail(model, ": no such folder, and not a Hugging Face repo id (owner/name[@revision])");
}

}  // namespace pix2struct::hub
