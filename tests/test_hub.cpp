// Checkpoints by name (hub.hpp) over loopback only: an HTTP server in the test (cpp-httplib, 127.0.0.1)
// serves the tiny checkpoint under the hub's URL scheme and headers (X-Repo-Commit, X-Linked-Etag,
// X-Linked-Size, ETag, a 302 to the LFS storage URL, 404 with X-Repo-Commit for a file the repo lacks). The
// download fills huggingface_hub's cache layout (refs, snapshots as relative symlinks into blobs named by
// etag), resumes after the server drops the connection mid-file (a Range request), rejects a corrupt blob by
// its sha256, sends HF_TOKEN to a gated repo; the filled cache (and one laid out by hand, as transformers
// leaves it) is used offline with no request; the environment picks the cache as huggingface_hub does.
#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "pix2struct/hub.hpp"
#include "pix2struct/pix2struct.hpp"

#include <httplib.h>  // after the library's headers (its <resolv.h> defines `_res`)

namespace fs = std::filesystem;
using namespace pix2struct;

namespace {
const fs::path kTiny = fs::path(PIX2STRUCT_TEST_DATA) / "models" / "tiny";
const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

std::string bytes_of(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), {}};
}
std::string sha256_hex(const std::string& data) {
    const fs::path tmp = fs::temp_directory_path() / ("p2s_hub_sha_" + std::to_string(getpid()));
    std::ofstream(tmp, std::ios::binary) << data;
    const std::string h = hub::detail::sha256_of(tmp);
    fs::remove(tmp);
    return h;
}

// The hub, for repos test/tiny (whole), test/corrupt (model.safetensors' bytes altered, etag of the true ones)
// and test/gated (needs "Bearer secret"). LFS files go through a 302 to /cdn/<sha256>; the first download of
// each LFS blob is cut after half its bytes when `drop` is set.
class FakeHub {
public:
    FakeHub() {
        for (const auto& e : fs::directory_iterator(kTiny)) files_[e.path().filename().string()] = bytes_of(e.path());
        files_.erase("generation_config.json");  // a repo without one: a 404 the cache remembers (.no_exist)
        server_.set_keep_alive_max_count(1);
        auto resolve = [this](const httplib::Request& req, httplib::Response& res) {
            const std::string repo = req.matches[1], revision = req.matches[2], file = req.matches[3];
            std::lock_guard lock(mutex_);
            ++requests_;
            if (repo != "test/tiny" && repo != "test/corrupt" && repo != "test/gated") {
                res.status = 401;  // what the hub answers for a repo that does not exist (or is private)
                return;
            }
            if (repo == "test/gated" && req.get_header_value("Authorization") != "Bearer secret") {
                res.status = 401;
                return;
            }
            if (revision != "main" && revision != kCommit) {
                res.status = 404;
                return;
            }
            res.set_header("X-Repo-Commit", kCommit);
            const auto it = files_.find(file);
            if (it == files_.end()) {
                res.status = 404;
                res.set_header("X-Error-Code", "EntryNotFound");
                return;
            }
            const bool lfs = file == "model.safetensors" || file == "spiece.model";
            if (lfs) {
                const std::string sha = sha256_hex(it->second);
                std::string body = it->second;
                if (repo == "test/corrupt") body[body.size() / 2] ^= 0x5a;
                blobs_[sha + "-" + repo.substr(5)] = body;
                res.status = 302;
                res.set_header("Location", base_ + "/cdn/" + sha + "-" + repo.substr(5));
                res.set_header("X-Linked-Etag", "\"" + sha + "\"");
                res.set_header("X-Linked-Size", std::to_string(it->second.size()));
                res.set_header("ETag", "\"" + sha.substr(0, 40) + "\"");
                return;
            }
            res.set_header("ETag", "\"" + sha256_hex(it->second).substr(0, 40) + "\"");
            res.set_content(it->second, "application/octet-stream");
        };
        server_.Get(R"(/(\w+/[\w.-]+)/resolve/([^/]+)/(.+))", resolve);
        server_.Get(R"(/cdn/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mutex_);
            ++requests_;
            const std::string key = req.matches[1];
            if (req.has_header("Range")) ranges_.push_back(req.get_header_value("Range"));
            const std::string body = blobs_.at(key);
            const bool cut = drop && !dropped_[key];
            dropped_[key] = true;
            res.set_content_provider(body.size(), "application/octet-stream",
                                     [body, cut](size_t offset, size_t length, httplib::DataSink& sink) {
                                         if (cut) {  // half of it, then the connection goes
                                             sink.write(body.data() + offset, std::min(length, body.size() / 2 - std::min(offset, body.size() / 2)));
                                             return false;
                                         }
                                         sink.write(body.data() + offset, length);
                                         return true;
                                     });
        });
        const int port = server_.bind_to_any_port("127.0.0.1");
        REQUIRE(port > 0);
        base_ = "http://127.0.0.1:" + std::to_string(port);
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        for (int i = 0; i < 500 && !server_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ~FakeHub() {
        server_.stop();
        thread_.join();
    }
    const std::string& endpoint() const { return base_; }
    int requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }
    std::vector<std::string> ranges() {
        std::lock_guard lock(mutex_);
        return ranges_;
    }
    const std::string& file(const std::string& name) const { return files_.at(name); }
    bool drop = false;

private:
    httplib::Server server_;
    std::thread thread_;
    std::string base_;
    std::mutex mutex_;
    std::map<std::string, std::string> files_, blobs_;
    std::map<std::string, bool> dropped_;
    std::vector<std::string> ranges_;
    int requests_ = 0;
};

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("p2s_hub_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
}  // namespace

TEST_CASE("hub: repo ids, and the cache folder the environment names (as huggingface_hub reads it)") {
    CHECK(hub::parse_repo_id("google/pix2struct-ai2d-base")->repo == "google/pix2struct-ai2d-base");
    CHECK(hub::parse_repo_id("google/pix2struct-ai2d-base")->revision == "main");
    CHECK(hub::parse_repo_id("google/deplot@refs/pr/3")->revision == "refs/pr/3");
    for (const char* bad : {"pix2struct", "/abs/path", "a/b/c", "a/", "/b", "a/b@", "../x", "a/..", "a b/c"})
        CHECK_MESSAGE(!hub::parse_repo_id(bad), bad);
    const char* vars[] = {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"};
    std::map<std::string, std::string> saved;
    for (const char* v : vars)
        if (const char* x = getenv(v)) saved[v] = x;
    for (const char* v : vars) unsetenv(v);
    setenv("HOME", "/h", 1);
    CHECK(hub::cache_dir() == fs::path("/h/.cache/huggingface/hub"));
    setenv("XDG_CACHE_HOME", "/x", 1);
    CHECK(hub::cache_dir() == fs::path("/x/huggingface/hub"));
    setenv("HF_HOME", "/hf", 1);
    CHECK(hub::cache_dir() == fs::path("/hf/hub"));
    setenv("HF_HUB_CACHE", "/c", 1);
    CHECK(hub::cache_dir() == fs::path("/c"));
    for (const char* v : vars) unsetenv(v);
    for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
}

TEST_CASE("hub: a download fills huggingface_hub's layout, resumes after a dropped connection, and answers as HF") {
    FakeHub server;
    server.drop = true;
    // left in the build folder: tests/reference/check_hub_cache.py has transformers load it
    const fs::path cache = fs::path(PIX2STRUCT_BUILD_DIR) / "hub-cache";
    fs::remove_all(cache);
    const hub::Options options{.cache = cache, .endpoint = server.endpoint(), .token = {}, .offline = false, .progress = false};
    const fs::path dir = hub::resolve_model("test/tiny", options);
    const fs::path repo = cache / "models--test--tiny";
    CHECK(dir == repo / "snapshots" / kCommit);
    CHECK(hub::detail::read_text(repo / "refs" / "main", "the ref") == kCommit);
    // every file is a relative symlink into blobs/<etag>, with the served bytes; LFS blobs are named by sha256
    for (const char* f : {"config.json", "preprocessor_config.json", "model.safetensors", "spiece.model", "tokenizer_config.json"}) {
        CAPTURE(f);
        REQUIRE(fs::is_symlink(dir / f));
        const fs::path target = fs::read_symlink(dir / f);
        CHECK(target.parent_path() == fs::path("..") / ".." / "blobs");
        CHECK(bytes_of(dir / f) == server.file(f));
    }
    CHECK(fs::read_symlink(dir / "model.safetensors").filename() == sha256_hex(server.file("model.safetensors")));
    CHECK(fs::exists(repo / ".no_exist" / kCommit / "generation_config.json"));
    for (const auto& e : fs::directory_iterator(repo / "blobs")) CHECK(e.path().extension() != ".incomplete");
    // the connection dropped mid-file: the rest came with a Range request from where it stopped
    const std::vector<std::string> ranges = server.ranges();
    REQUIRE(ranges.size() == 2);  // model.safetensors and spiece.model
    CHECK(ranges[0] == "bytes=" + std::to_string(server.file("model.safetensors").size() / 2) + "-");

    // the snapshot is a model folder: HF's answer (the tiny goldens' first VQA case)
    std::ifstream in(fs::path(PIX2STRUCT_TEST_DATA) / "models" / "goldens" / "tiny.json");
    const nlohmann::json g = nlohmann::json::parse(in)["pipeline"][0];
    Pipeline pipe = Pipeline::load(dir, {.threads = 2});
    const Answer a = pipe.ask(load_image(fs::path(PIX2STRUCT_SOURCE_DIR) / g["image"].get<std::string>()), g["question"].get<std::string>());
    auto ids = g["ids"].get<std::vector<int64_t>>();
    CHECK(a.ids == std::vector<int64_t>(ids.begin() + 1, ids.end()));

    // filled: a second resolve, offline or not, makes no request
    const int before = server.requests();
    CHECK(hub::resolve_model("test/tiny", options) == dir);
    hub::Options offline = options;
    offline.offline = true;
    CHECK(hub::resolve_model("test/tiny", offline) == dir);
    setenv("HF_HUB_OFFLINE", "1", 1);
    CHECK(hub::resolve_model("test/tiny", options) == dir);
    // offline and not cached: an error naming the repo and what is missing, and still no request
    CHECK_THROWS_WITH(hub::resolve_model("test/other@v2", options),
                      doctest::Contains("test/other@v2: this revision is not in the Hugging Face cache"));
    CHECK_THROWS_WITH(hub::resolve_model("test/other@v2", options), doctest::Contains("HF_HUB_OFFLINE"));
    unsetenv("HF_HUB_OFFLINE");
    fs::remove(dir / "spiece.model");
    CHECK_THROWS_WITH(hub::resolve_model("test/tiny", offline), doctest::Contains("test/tiny@main: 'spiece.model' is not in the Hugging Face cache"));
    CHECK(server.requests() == before);
    // online, the missing link is made again from the blob already there (a HEAD, no download)
    CHECK(hub::resolve_model("test/tiny", options) == dir);
    CHECK(bytes_of(dir / "spiece.model") == server.file("spiece.model"));
    CHECK(server.ranges().size() == 2);
}

TEST_CASE("hub: a corrupt download is refused by its sha256 and deleted; gated repos take HF_TOKEN; a missing repo says so") {
    FakeHub server;
    const fs::path cache = fresh_dir("errors");
    hub::Options options{.cache = cache, .endpoint = server.endpoint(), .token = {}, .offline = false, .progress = false};
    CHECK_THROWS_WITH(hub::resolve_model("test/corrupt", options),
                      doctest::Contains("'model.safetensors' downloaded with sha256"));
    CHECK_THROWS_WITH(hub::resolve_model("test/corrupt", options), doctest::Contains("a corrupt download (deleted; run again)"));
    for (const auto& e : fs::directory_iterator(cache / "models--test--corrupt" / "blobs")) {
        CAPTURE(e.path().string());
        CHECK(e.path().filename() != sha256_hex(server.file("model.safetensors")));
        CHECK(e.path().extension() != ".incomplete");
    }
    CHECK_THROWS_WITH(hub::resolve_model("test/gated", options), doctest::Contains("set HF_TOKEN"));
    options.token = "secret";
    CHECK(fs::exists(hub::resolve_model("test/gated", options) / "model.safetensors"));
    CHECK_THROWS_WITH(hub::resolve_model("test/tiny@v9", options), doctest::Contains("test/tiny@v9: 'config.json' is not in the repo (HTTP 404)"));
    CHECK_THROWS_WITH(hub::resolve_model("nobody/nothing", options), doctest::Contains("nobody/nothing@main: 'config.json' needs access (HTTP 401)"));
    CHECK_THROWS_WITH(hub::resolve_model("not-a-folder", options), doctest::Contains("not a Hugging Face repo id"));
    options.endpoint = "http://127.0.0.1:9";  // nothing listens there
    CHECK_THROWS_WITH(hub::resolve_model("test/else", options), doctest::Contains("cannot reach http://127.0.0.1:9"));
    fs::remove_all(cache);
}

TEST_CASE("hub: a cache laid out as transformers leaves it is used in place, with no network") {
    const fs::path cache = fresh_dir("inplace");
    const fs::path repo = cache / "models--google--pix2struct-ai2d-base";
    fs::create_directories(repo / "refs");
    fs::create_directories(repo / "blobs");
    fs::create_directories(repo / "snapshots" / kCommit);
    std::ofstream(repo / "refs" / "main") << kCommit;  // no newline, as huggingface_hub writes it
    int n = 0;
    for (const auto& e : fs::directory_iterator(kTiny)) {
        const std::string etag = "etag" + std::to_string(n++);
        fs::copy_file(e.path(), repo / "blobs" / etag);
        fs::create_symlink(fs::path("..") / ".." / "blobs" / etag, repo / "snapshots" / kCommit / e.path().filename());
    }
    // no endpoint answers: the cache alone serves it, and the weights are mapped through the symlink
    const hub::Options options{.cache = cache, .endpoint = "http://127.0.0.1:9", .token = {}, .offline = false, .progress = false};
    const fs::path dir = hub::resolve_model("google/pix2struct-ai2d-base", options);
    CHECK(dir == repo / "snapshots" / kCommit);
    CHECK(hub::resolve_model("google/pix2struct-ai2d-base@" + kCommit, options) == dir);
    Pipeline pipe = Pipeline::load(dir, {.threads = 2});
    CHECK(pipe.is_vqa());
    fs::remove_all(cache);
}
