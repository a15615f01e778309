// pix2struct-server as its users meet it, over loopback (127.0.0.1, a free port): OpenAI's chat completions
// (plain and streamed) and /v1/answer give HF's answers on the tiny checkpoint; 1, 8 and 32 concurrent clients
// each get the answer asked alone; malformed and hostile requests get OpenAI-shaped 4xx errors and the server
// still answers right afterwards; /health, /v1/models, /metrics; 429 and 413; SIGTERM finishes the request in
// flight and exits 0. Every loop is bounded.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pix2struct/image/load.hpp"
#include "pix2struct/pix2struct.hpp"
#include "tests/programs.hpp"

#include <httplib.h>  // after the library's headers (its <resolv.h> defines `_res`)

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace pix2struct;

namespace {
const fs::path kData = fs::path(PIX2STRUCT_TEST_DATA) / "models";

std::string base64(const std::string& in) {
    static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        for (bits += 8; bits >= 6; bits -= 6) out += a[(acc >> (bits - 6)) & 63];
    }
    if (bits > 0) out += a[(acc << (6 - bits)) & 63];
    while (out.size() % 4) out += '=';
    return out;
}
std::string file_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), {}};
}

// The server program, started with `args` on a free port of 127.0.0.1, ready (GET /health 200) when made.
class ServerProcess {
public:
    explicit ServerProcess(const std::vector<std::string>& args) {
        int out[2];
        REQUIRE(pipe(out) == 0);
        const std::string exe = p2s_test::program("pix2struct-server").string();
        std::vector<std::string> argv = {exe, "--model", (kData / "tiny").string(), "--host", "127.0.0.1", "--port", "0", "--threads", "2"};
        argv.insert(argv.end(), args.begin(), args.end());
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            close(out[1]);
            std::vector<char*> c;
            for (std::string& a : argv) c.push_back(a.data());
            c.push_back(nullptr);
            execv(exe.c_str(), c.data());
            _exit(127);
        }
        close(out[1]);
        // the first line: "listening on http://127.0.0.1:PORT" (bounded wait)
        std::string line;
        pollfd p{out[0], POLLIN, 0};
        for (int i = 0; i < 600 && line.find('\n') == std::string::npos; ++i) {
            if (poll(&p, 1, 100) <= 0) continue;
            char buf[256];
            const ssize_t n = read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            line.append(buf, size_t(n));
        }
        close(out[0]);
        const size_t colon = line.rfind(':');
        REQUIRE_MESSAGE(line.rfind("listening on http://127.0.0.1:", 0) == 0, line);
        port_ = std::stoi(line.substr(colon + 1));
        httplib::Client c = client();
        bool ready = false;
        for (int i = 0; i < 600 && !ready; ++i) {  // at most 60 s (a sanitizer build loads slowly)
            auto r = c.Get("/health");
            ready = r && r->status == 200;
            if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        REQUIRE(ready);
    }
    ~ServerProcess() {
        if (pid_ > 0 && !waited_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(60, 0);
        return c;
    }
    pid_t pid() const { return pid_; }
    // Waits (bounded, 30 s) for the process to exit; its exit status, or -1.
    int wait_exit() {
        for (int i = 0; i < 3000; ++i) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                waited_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return -1;
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
    bool waited_ = false;
};

json chat_body(const std::string& image_bytes, const std::string& question, int max_tokens = 0, bool stream = false) {
    json content = json::array({{{"type", "text"}, {"text", question}},
                                {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64(image_bytes)}}}}});
    json body{{"model", "tiny"}, {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
    if (max_tokens > 0) body["max_tokens"] = max_tokens;
    if (stream) body["stream"] = true;
    return body;
}
json post_json(httplib::Client& c, const json& body, int& status) {
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    REQUIRE(r);
    status = r->status;
    return json::parse(r->body, nullptr, false);
}

struct Golden {
    std::string image, question, text;
    std::vector<int64_t> ids;  // without the start token
};
std::vector<Golden> vqa_goldens() {
    std::ifstream in(kData / "goldens" / "tiny.json");
    REQUIRE(in);
    const json g = json::parse(in);
    std::vector<Golden> out;
    for (const auto& c : g["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        auto ids = c["ids"].get<std::vector<int64_t>>();
        out.push_back({c["image"], c["question"], c["text"], {ids.begin() + 1, ids.end()}});
    }
    REQUIRE(out.size() == 3);
    return out;
}
}  // namespace

TEST_CASE("server: chat completions (plain and streamed) and /v1/answer give HF's answers; /health, /v1/models, /metrics") {
    ServerProcess server({});
    httplib::Client c = server.client();
    for (const Golden& g : vqa_goldens()) {
        CAPTURE(g.question);
        const std::string bytes = file_bytes(fs::path(PIX2STRUCT_SOURCE_DIR) / g.image);
        int status = 0;
        const json reply = post_json(c, chat_body(bytes, g.question), status);
        REQUIRE(status == 200);
        CHECK(reply["object"] == "chat.completion");
        CHECK(reply["choices"][0]["message"]["role"] == "assistant");
        CHECK(reply["choices"][0]["message"]["content"] == g.text);
        CHECK(reply["choices"][0]["finish_reason"] == (g.ids.back() == 1 ? "stop" : "length"));
        CHECK(reply["usage"]["completion_tokens"] == g.ids.size());

        // streamed: the deltas add up to the answer, then a finish_reason, then [DONE]
        auto r = c.Post("/v1/chat/completions", chat_body(bytes, g.question, 0, true).dump(), "application/json");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->get_header_value("Content-Type").find("text/event-stream") == 0);
        std::string text, finish;
        bool done = false;
        size_t at = 0;
        for (size_t next; (next = r->body.find("\n\n", at)) != std::string::npos; at = next + 2) {
            const std::string event = r->body.substr(at, next - at);
            REQUIRE(event.rfind("data: ", 0) == 0);
            if (event == "data: [DONE]") {
                done = true;
                continue;
            }
            const json chunk = json::parse(event.substr(6));
            CHECK(chunk["object"] == "chat.completion.chunk");
            const json& choice = chunk["choices"][0];
            if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
            if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
        }
        CHECK(done);
        CHECK(text == g.text);
        CHECK(finish == (g.ids.back() == 1 ? "stop" : "length"));

        // curl's way: multipart
        httplib::MultipartFormDataItems form = {{"image", bytes, "image.png", "image/png"}, {"question", g.question, "", ""}};
        auto m = c.Post("/v1/answer", form);
        REQUIRE(m);
        CHECK(m->status == 200);
        const json a = json::parse(m->body);
        CHECK(a["answer"] == g.text);
        CHECK(a["ids"].get<std::vector<int64_t>>() == g.ids);
    }
    auto h = c.Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(json::parse(h->body)["status"] == "ok");
    auto models = c.Get("/v1/models");
    REQUIRE(models);
    CHECK(json::parse(models->body)["data"][0]["id"] == "tiny");
    auto metrics = c.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("pix2struct_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"} 6") != std::string::npos);
    CHECK(metrics->body.find("pix2struct_requests_total{endpoint=\"/v1/answer\",code=\"200\"} 3") != std::string::npos);
    CHECK(metrics->body.find("pix2struct_request_duration_seconds_count ") != std::string::npos);
    CHECK(metrics->body.find("pix2struct_queue_length 0") != std::string::npos);
    CHECK(metrics->body.find("# TYPE pix2struct_request_duration_seconds histogram") != std::string::npos);
}

TEST_CASE("server: 1, 8 and 32 concurrent clients each get the answer asked alone, none dropped") {
    Pipeline pipe = Pipeline::load(kData / "tiny", {.threads = 2});
    const std::vector<std::string> images = {"diagram.png", "tall.png"};
    const std::vector<std::string> questions = {"What is shown?", "Which stage comes after the larva?", "What eats the plant?"};
    struct Ask {
        std::string bytes, question;
        int max_tokens;
        std::string alone;
    };
    std::vector<Ask> asks;
    for (int i = 0; i < 32; ++i) {
        const fs::path image = kData / "images" / images[size_t(i) % 2];
        std::string q = questions[size_t(i) % questions.size()];
        q.append(" ").append(std::to_string(i));
        const int max_tokens = 1 + (i * 7) % 20;
        asks.push_back({file_bytes(image), q, max_tokens, pipe.ask(load_image(image), q, {.max_new_tokens = max_tokens}).text});
    }
    ServerProcess server({"--sequences", "8"});
    for (const int n : {1, 8, 32}) {
        CAPTURE(n);
        std::vector<std::string> got(static_cast<size_t>(n));
        std::vector<int> status(static_cast<size_t>(n), 0);
        std::vector<std::string> failure(static_cast<size_t>(n));
        std::vector<std::thread> clients;
        for (int k = 0; k < n; ++k)
            clients.emplace_back([&, k] {
                httplib::Client c = server.client();
                const Ask& a = asks[size_t(k)];
                auto r = c.Post("/v1/chat/completions", chat_body(a.bytes, a.question, a.max_tokens).dump(), "application/json");
                if (!r) {
                    failure[size_t(k)] = httplib::to_string(r.error());
                    return;
                }
                status[size_t(k)] = r->status;
                const json j = json::parse(r->body, nullptr, false);
                if (r->status == 200) got[size_t(k)] = j["choices"][0]["message"]["content"];
            });
        for (std::thread& t : clients) t.join();
        for (int k = 0; k < n; ++k) {
            CAPTURE(k);
            CAPTURE(failure[size_t(k)]);
            CHECK(status[size_t(k)] == 200);
            CHECK(got[size_t(k)] == asks[size_t(k)].alone);
        }
    }
}

TEST_CASE("server: malformed and hostile requests get OpenAI-shaped 4xx errors; the server answers right afterwards") {
    ServerProcess server({"--max-body-mb", "1", "--max-pixels", "1000000", "--max-question-bytes", "200"});
    httplib::Client c = server.client();
    const Golden g = vqa_goldens()[0];
    const std::string png = file_bytes(fs::path(PIX2STRUCT_SOURCE_DIR) / g.image);
    const json good = chat_body(png, g.question);
    auto expect = [&](const std::string& body, int want, const std::string& says) {
        CAPTURE(body.substr(0, 200));
        auto r = c.Post("/v1/chat/completions", body, "application/json");
        REQUIRE(r);
        CHECK(r->status == want);
        const json e = json::parse(r->body, nullptr, false);
        REQUIRE(e.is_object());
        REQUIRE(e.contains("error"));
        CHECK(e["error"]["message"].get<std::string>().find(says) != std::string::npos);
        CHECK(e["error"].contains("type"));
    };
    auto with = [&](const std::function<void(json&)>& f) {
        json b = good;
        f(b);
        return b.dump();
    };
    expect("{not json", 400, "not valid JSON");
    expect("[1, 2]", 400, "JSON object");
    expect("{}", 400, "messages");
    expect(with([](json& b) { b["messages"][0]["content"] = "just text"; }), 400, "no image");
    expect(with([](json& b) { b["messages"][0]["content"].erase(1); }), 400, "no image_url part");
    expect(with([](json& b) { b["messages"][0]["content"].erase(0); }), 400, "no text part");
    expect(with([](json& b) { b["messages"][0]["role"] = "system"; }), 400, "no user message");
    expect(with([](json& b) { b["messages"][0]["content"][1]["image_url"]["url"] = "data:image/png;base64,@@@@"; }), 400, "base64");
    expect(with([](json& b) { b["messages"][0]["content"][1]["image_url"]["url"] = "data:image/png;base64," + base64("not an image at all"); }),
           400, "the request's image");
    expect(with([](json& b) { b["messages"][0]["content"][1]["image_url"]["url"] = "https://example.com/a.png"; }), 400, "fetches nothing");
    expect(with([](json& b) { b["temperature"] = 0.7; }), 400, "sampling");
    expect(with([](json& b) { b["n"] = 2; }), 400, "n must be 1");
    expect(with([](json& b) { b["max_tokens"] = 0; }), 400, "max_tokens must be an integer from 1 to");
    expect(with([](json& b) { b["max_tokens"] = 1000000; }), 400, "max_tokens must be an integer from 1 to");
    expect(with([](json& b) { b["max_tokens"] = "many"; }), 400, "max_tokens");
    expect(with([](json& b) { b["stop"] = json::array({"\n"}); }), 400, "stop sequences");
    expect(with([](json& b) { b["messages"][0]["content"][0]["text"] = std::string(300, 'q'); }), 400, "--max-question-bytes");
    {   // 1200 x 1200 pixels: over --max-pixels 1000000
        Image wide;
        wide.width = wide.height = 1200;
        wide.rgb.assign(size_t(1200) * 1200 * 3, 200);
        const fs::path file = fs::temp_directory_path() / ("p2s_server_big_" + std::to_string(getpid()) + ".png");
        save_png(wide, file);
        const std::string big = file_bytes(file);
        fs::remove(file);
        expect(with([&](json& b) { b["messages"][0]["content"][1]["image_url"]["url"] = "data:image/png;base64," + base64(big); }),
               400, "pixels");
    }
    {   // over --max-body-mb 1: 413, with an OpenAI-shaped body
        auto r = c.Post("/v1/chat/completions", std::string(2 << 20, ' '), "application/json");
        REQUIRE(r);
        CHECK(r->status == 413);
        CHECK(json::parse(r->body)["error"]["message"].get<std::string>().find("over the limit") != std::string::npos);
    }
    {   // no such endpoint; multipart without an image
        auto r = c.Get("/v2/nothing");
        REQUIRE(r);
        CHECK(r->status == 404);
        CHECK(json::parse(r->body).contains("error"));
        auto m = c.Post("/v1/answer", httplib::MultipartFormDataItems{{"question", "What?", "", ""}});
        REQUIRE(m);
        CHECK(m->status == 400);
        CHECK(json::parse(m->body)["error"]["message"].get<std::string>().find("'image'") != std::string::npos);
    }
    // fields OpenAI clients send that leave a greedy answer unchanged are accepted
    int status = 0;
    json ok = post_json(c, json::parse(with([](json& b) {
                            b["temperature"] = 0;
                            b["top_p"] = 1;
                            b["user"] = "u";
                            b["seed"] = 7;
                            b["stream"] = false;
                        })), status);
    CHECK(status == 200);
    CHECK(ok["choices"][0]["message"]["content"] == g.text);

    // fuzz-style: 300 mutations of a valid request (bytes flipped, cut, spliced); never a 5xx or a dropped
    // connection, and the server still answers right afterwards
    std::mt19937 rng(1234);
    const std::string valid = chat_body(png, g.question, 4).dump();
    int answered = 0;
    for (int i = 0; i < 300; ++i) {
        std::string body = valid;
        switch (rng() % 4) {
            case 0:  // flip bytes
                for (int k = 0; k < 1 + int(rng() % 8); ++k) body[rng() % body.size()] = char(rng());
                break;
            case 1: body.resize(rng() % body.size()); break;  // cut
            case 2: body.insert(rng() % body.size(), valid.substr(rng() % valid.size(), 64)); break;  // splice
            default: {  // a wrong type somewhere in the JSON
                json b = json::parse(valid);
                const char* keys[] = {"messages", "max_tokens", "stream", "model", "temperature"};
                b[keys[rng() % 5]] = rng() % 2 ? json(-1) : json::array({nullptr, "x"});
                body = b.dump();
            }
        }
        auto r = c.Post("/v1/chat/completions", body, "application/json");
        REQUIRE(r);
        CAPTURE(body.substr(0, 300));
        CHECK(r->status < 500);
        if (r->status == 200) ++answered;
    }
    MESSAGE(answered, " of 300 mutated requests were still valid and answered");
    ok = post_json(c, good, status);
    CHECK(status == 200);
    CHECK(ok["choices"][0]["message"]["content"] == g.text);
}

TEST_CASE("server: a full queue is 429; SIGTERM finishes the streamed answer in flight and exits 0") {
    {
        ServerProcess server({"--max-queue", "0"});  // no room to wait: every question is refused
        httplib::Client c = server.client();
        const Golden g = vqa_goldens()[0];
        int status = 0;
        const json e = post_json(c, chat_body(file_bytes(fs::path(PIX2STRUCT_SOURCE_DIR) / g.image), g.question), status);
        CHECK(status == 429);
        CHECK(e["error"]["type"] == "rate_limit_error");
    }
    ServerProcess server({});
    const Golden g = vqa_goldens()[0];
    httplib::Client c = server.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.body = chat_body(file_bytes(fs::path(PIX2STRUCT_SOURCE_DIR) / g.image), g.question, 0, true).dump();
    req.set_header("Content-Type", "application/json");
    std::string received;
    bool signalled = false;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        received.append(data, n);
        if (!signalled) {  // the answer is in flight: ask the server to stop
            signalled = true;
            kill(server.pid(), SIGTERM);
        }
        return true;
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    CHECK(c.send(req, res, error));
    CHECK(signalled);
    CHECK(received.find("data: [DONE]") != std::string::npos);
    std::string text;
    for (size_t at = 0, next; (next = received.find("\n\n", at)) != std::string::npos; at = next + 2) {
        const std::string event = received.substr(at, next - at);
        if (event == "data: [DONE]") continue;
        const json d = json::parse(event.substr(6))["choices"][0]["delta"];
        if (d.contains("content")) text += d["content"].get<std::string>();
    }
    CHECK(text == g.text);
    CHECK(server.wait_exit() == 0);
}
