// pix2struct-server — a Pix2Struct checkpoint over HTTP, OpenAI-compatible, with continuous batching.
//
//   pix2struct-server --model pix2struct-ai2d-base --host 127.0.0.1 --port 8080
//   curl -F image=@diagram.png -F question="What does the label 15 represent?" http://127.0.0.1:8080/v1/answer
//
// Endpoints
//   POST /v1/chat/completions  OpenAI's chat format: the last user message's content holds a {"type": "text"}
//                              part (the question) and an {"type": "image_url"} part with a data:image/…;base64
//                              URL (the server fetches nothing); "max_tokens" (or "max_completion_tokens"),
//                              "stream": true for server-sent events (chat.completion.chunk … [DONE]). The
//                              answer is choices[0].message.content; finish_reason "stop" (eos) or "length".
//                              Fields that do not change a greedy answer (temperature 0, top_p, seed, user, …)
//                              are accepted; n > 1, temperature > 0, stop sequences, penalties and logprobs
//                              are refused with a 400 that says so.
//   POST /v1/answer            multipart/form-data: image (a file), question, max_tokens (optional) → JSON
//                              {"answer", "ids", "finish_reason", "real_patches", "timings_ms"}.
//   GET  /health               200 {"status": "ok"}; 503 {"status": "loading"} until the model is loaded (and,
//                              for --model owner/name, downloaded into the Hugging Face cache if missing).
//   GET  /v1/models            the served model (its id: --model-name, default the folder's name).
//   GET  /metrics              Prometheus text: requests by endpoint and status, queue length, running
//                              answers, tokens, tokens/s over the last 10 s, a latency histogram.
// Errors are OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with status 400 (malformed JSON,
// bad base64, bytes that are no image, a message with no image or no text, limits), 404, 405, 413 (body over
// --max-body-mb), 429 (--max-queue questions wait already), 503 (loading, shutting down), 504 (over
// --timeout-s), 500 (the model failed).
// Continuous batching (pix2struct/batcher.hpp): up to --sequences answers decode at once; a request that
// arrives meanwhile joins at the next step boundary, and each answer is the one pix2struct-vqa gives alone.
// Images are decoded and preprocessed on the HTTP threads, at most --preprocess-threads at a time.
// SIGTERM or SIGINT: stops accepting connections, finishes the requests in flight, exits 0.
// --port 0 picks a free port; the first line on stdout is "listening on http://HOST:PORT".
#include <CLI/CLI.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/batcher.hpp"
#include "pix2struct/hub.hpp"
#include "pix2struct/pix2struct.hpp"

// after Eigen (the implementation): httplib.h brings <resolv.h>, whose `_res` macro breaks Eigen's parameters
#include <httplib.h>

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

struct Limits {
    size_t max_body_bytes = 20 << 20;
    int64_t max_pixels = 25'000'000;
    size_t max_question_bytes = 2000;
    int max_tokens = 0;  // the checkpoint's length rule
    double timeout_s = 120;
};

// An error a request gets: HTTP status and OpenAI's error fields.
struct HttpError {
    int status = 400;
    std::string message, type = "invalid_request_error", param, code;
};
[[noreturn]] void refuse(std::string message, std::string param = {}, std::string code = {}) {
    throw HttpError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
}
std::string error_body(const HttpError& e) {
    json err{{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
    if (!e.param.empty()) err["param"] = e.param;
    if (!e.code.empty()) err["code"] = e.code;
    return json{{"error", err}}.dump();
}

// Strict base64 (RFC 4648, padding optional, no whitespace): the bytes, or an HttpError.
std::vector<std::byte> base64_decode(std::string_view s, const char* param) {
    static const std::array<int8_t, 256> value = [] {
        std::array<int8_t, 256> v{};
        v.fill(-1);
        const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) v[uint8_t(alphabet[i])] = int8_t(i);
        return v;
    }();
    while (!s.empty() && s.back() == '=' && s.size() % 4 != 1) s.remove_suffix(1);
    if (s.size() % 4 == 1) refuse("the image's base64 has a length no encoding gives", param, "invalid_base64");
    std::vector<std::byte> out;
    out.reserve(s.size() / 4 * 3 + 2);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        const int8_t v = value[uint8_t(s[i])];
        if (v < 0) refuse("the image's base64 has a character outside the alphabet at offset " + std::to_string(i), param, "invalid_base64");
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::byte((acc >> bits) & 0xFF));
        }
    }
    return out;
}

// Counters and the latency histogram for /metrics.
class Metrics {
public:
    void request(const std::string& endpoint, int status, double seconds) {
        std::lock_guard lock(mutex_);
        ++requests_[endpoint + "\",code=\"" + std::to_string(status)];
        if (status == 200) {
            for (size_t i = 0; i < kBuckets.size(); ++i)
                if (seconds <= kBuckets[i]) ++latency_[i];
            ++latency_count_;
            latency_sum_ += seconds;
        }
    }
    void tokens(int64_t n) {
        std::lock_guard lock(mutex_);
        const auto now = clock_type::now();
        recent_.emplace_back(now, n);
        while (!recent_.empty() && now - recent_.front().first > std::chrono::seconds(10)) recent_.pop_front();
    }
    std::string text(const pix2struct::Batcher* batcher, bool ready) const {
        std::lock_guard lock(mutex_);
        std::string out;
        auto line = [&](const std::string& s) { out += s + "\n"; };
        line("# HELP pix2struct_requests_total HTTP requests by endpoint and status.");
        line("# TYPE pix2struct_requests_total counter");
        for (const auto& [key, n] : requests_) line("pix2struct_requests_total{endpoint=\"" + key + "\"} " + std::to_string(n));
        const pix2struct::Batcher::Stats s = batcher ? batcher->stats() : pix2struct::Batcher::Stats{};
        line("# HELP pix2struct_ready 1 once the model is loaded.");
        line("# TYPE pix2struct_ready gauge");
        line(std::string("pix2struct_ready ") + (ready ? "1" : "0"));
        line("# HELP pix2struct_queue_length Questions waiting for a decoding slot.");
        line("# TYPE pix2struct_queue_length gauge");
        line("pix2struct_queue_length " + std::to_string(s.queued));
        line("# HELP pix2struct_running Answers decoding now.");
        line("# TYPE pix2struct_running gauge");
        line("pix2struct_running " + std::to_string(s.running));
        line("# HELP pix2struct_tokens_total Tokens generated.");
        line("# TYPE pix2struct_tokens_total counter");
        line("pix2struct_tokens_total " + std::to_string(s.tokens));
        int64_t recent = 0;
        for (const auto& [t, n] : recent_) recent += n;
        line("# HELP pix2struct_tokens_per_second Tokens generated per second over the last 10 s.");
        line("# TYPE pix2struct_tokens_per_second gauge");
        line("pix2struct_tokens_per_second " + std::to_string(double(recent) / 10.0));
        line("# HELP pix2struct_request_duration_seconds Time to answer a successful request.");
        line("# TYPE pix2struct_request_duration_seconds histogram");
        for (size_t i = 0; i < kBuckets.size(); ++i) {
            char le[32];
            std::snprintf(le, sizeof le, "%g", kBuckets[i]);
            line("pix2struct_request_duration_seconds_bucket{le=\"" + std::string(le) + "\"} " + std::to_string(latency_[i]));
        }
        line("pix2struct_request_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(latency_count_));
        line("pix2struct_request_duration_seconds_sum " + std::to_string(latency_sum_));
        line("pix2struct_request_duration_seconds_count " + std::to_string(latency_count_));
        return out;
    }

private:
    static constexpr std::array<double, 11> kBuckets{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
    mutable std::mutex mutex_;
    std::map<std::string, int64_t> requests_;
    std::array<int64_t, kBuckets.size()> latency_{};
    int64_t latency_count_ = 0;
    double latency_sum_ = 0;
    std::deque<std::pair<clock_type::time_point, int64_t>> recent_;
};

// httplib's stop() does nothing before listen has begun: wait for it.
void stop_when_running(httplib::Server& http) {
    while (!http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    http.stop();
}

class Server {
public:
    Server(Limits limits, std::string model_name, int preprocess_threads)
        : limits_(limits), model_name_(std::move(model_name)), preprocessing_(std::max(1, preprocess_threads)) {}

    void serve_with(pix2struct::Pipeline pipeline, const pix2struct::BatcherOptions& options) {
        pipeline_ = std::make_unique<pix2struct::Pipeline>(std::move(pipeline));
        pix2struct::BatcherOptions o = options;
        if (limits_.max_tokens > 0) o.max_new_tokens = limits_.max_tokens;
        batcher_ = std::make_unique<pix2struct::Batcher>(*pipeline_, o);
        max_tokens_ = int(batcher_->max_new_tokens());
        ready_ = true;
    }
    void stop_batcher() {
        if (batcher_) batcher_->shutdown();
    }
    // Graceful stop: new requests get 503, the ones in flight (streams included) finish; then httplib stops
    // (its stop() would cut streams short). Waits at most --timeout-s and a second.
    void drain(httplib::Server& http) {
        draining_ = true;
        const auto end = clock_type::now() + std::chrono::duration<double>(limits_.timeout_s + 1);
        while (inflight_ > 0 && clock_type::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        stop_when_running(http);
    }

    void routes(httplib::Server& http) {
        http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
            res.status = ready_ ? 200 : 503;
            res.set_content(json{{"status", ready_ ? "ok" : "loading"}}.dump(), "application/json");
        });
        http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            handle("/v1/models", res, [&] {
                res.set_content(json{{"object", "list"},
                                     {"data", json::array({{{"id", model_name_}, {"object", "model"}, {"created", 0},
                                                            {"owned_by", "pix2struct.cpp"}}})}}.dump(),
                                "application/json");
            });
        });
        http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics_.text(ready_ ? batcher_.get() : nullptr, ready_), "text/plain; version=0.0.4");
        });
        http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
            handle("/v1/chat/completions", res, [&] { chat(req, res); });
        });
        http.Post("/v1/answer", [this](const httplib::Request& req, httplib::Response& res) {
            handle("/v1/answer", res, [&] { answer(req, res); });
        });
        // statuses httplib sets itself (404, 405, 413, 400 for a request it cannot parse) get an OpenAI-shaped body
        http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return;
            HttpError e{res.status, "", "invalid_request_error", "", ""};
            e.message = res.status == 404   ? "no such endpoint"
                        : res.status == 413 ? "the request body is over the limit (--max-body-mb)"
                        : res.status == 405 ? "method not allowed on this endpoint"
                                            : "malformed request (HTTP " + std::to_string(res.status) + ")";
            res.set_content(error_body(e), "application/json");
        });
        http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
            res.status = 500;
            res.set_content(error_body({500, "internal error", "server_error", "", ""}), "application/json");
        });
    }

private:
    // Counts a request in flight while it lives (a stream's lives in its content provider until it ends).
    struct InFlight {
        explicit InFlight(Server& s) : server(&s) { ++s.inflight_; }
        InFlight(const InFlight&) = delete;
        ~InFlight() { --server->inflight_; }
        Server* server;
    };

    // Runs a handler: HttpError and library errors become OpenAI-shaped error responses; counts the request.
    template <class F>
    void handle(const std::string& endpoint, httplib::Response& res, F&& f) {
        const auto t0 = clock_type::now();
        InFlight counted(*this);
        try {
            if (!ready_) throw HttpError{503, "the model is loading", "server_error", "", "loading"};
            if (draining_) throw HttpError{503, "the server is shutting down", "server_error", "", "shutting_down"};
            f();
            if (res.status == -1) res.status = 200;
        } catch (const HttpError& e) {
            res.status = e.status;
            res.set_content(error_body(e), "application/json");
        } catch (const pix2struct::BatcherFull& e) {
            res.status = 429;
            res.set_content(error_body({429, std::string("too many requests: ") + e.what(), "rate_limit_error", "", "queue_full"}),
                            "application/json");
        } catch (const pix2struct::BatcherTimeout& e) {
            res.status = 504;
            res.set_content(error_body({504, std::string(e.what()) + " (--timeout-s)", "timeout_error", "", "timeout"}),
                            "application/json");
        } catch (const std::exception& e) {
            res.status = 500;
            res.set_content(error_body({500, e.what(), "server_error", "", ""}), "application/json");
        }
        metrics_.request(endpoint, res.status, std::chrono::duration<double>(clock_type::now() - t0).count());
    }

    // Decodes and preprocesses an image and question, within the limits.
    pix2struct::Patches prepare(std::span<const std::byte> bytes, const std::string& question, const char* param) {
        if (question.size() > limits_.max_question_bytes)
            refuse("the question is " + std::to_string(question.size()) + " bytes, over the limit of " +
                       std::to_string(limits_.max_question_bytes) + " (--max-question-bytes)", "messages", "question_too_long");
        if (pipeline_->is_vqa() && question.empty()) refuse("no question: this is a VQA checkpoint", "messages", "no_text");
        std::counting_semaphore<>& slots = preprocessing_;
        slots.acquire();
        struct Release {
            std::counting_semaphore<>& s;
            ~Release() { s.release(); }
        } release{slots};
        try {
            const pix2struct::Image image = pix2struct::load_image_from_memory(
                bytes, "the request's image", {.max_pixels = limits_.max_pixels, .max_file_bytes = int64_t(limits_.max_body_bytes)});
            return pipeline_->prepare(image, question);
        } catch (const pix2struct::Error& e) {  // not an image, over the limits, a question the header cannot draw
            refuse(e.what(), param, "invalid_image");
        }
    }

    int max_tokens_of(const json& body) const {
        for (const char* key : {"max_completion_tokens", "max_tokens"}) {
            if (!body.contains(key) || body[key].is_null()) continue;
            if (!body[key].is_number_integer() || body[key].get<int64_t>() < 1 || body[key].get<int64_t>() > max_tokens_)
                refuse(std::string(key) + " must be an integer from 1 to " + std::to_string(max_tokens_), key, "invalid_max_tokens");
            return body[key].get<int>();
        }
        return 0;
    }

    // The OpenAI fields we accept only where they leave a greedy answer unchanged.
    static void check_sampling(const json& body) {
        auto number = [&](const char* key, double fallback) {
            if (!body.contains(key) || body[key].is_null()) return fallback;
            if (!body[key].is_number()) refuse(std::string(key) + " must be a number", key);
            return body[key].get<double>();
        };
        if (number("temperature", 0) < 0) refuse("temperature must be ≥ 0", "temperature");
        if (number("temperature", 0) > 0)
            refuse("temperature > 0 asks for sampling, which this server does not do yet: send 0 (greedy decoding)", "temperature");
        if (number("n", 1) != 1) refuse("n must be 1: one answer per request (greedy decoding has one)", "n");
        if (number("presence_penalty", 0) != 0 || number("frequency_penalty", 0) != 0)
            refuse("presence and frequency penalties are not supported: leave them 0", "presence_penalty");
        if (body.contains("stop") && !body["stop"].is_null() && !(body["stop"].is_array() && body["stop"].empty()))
            refuse("stop sequences are not supported", "stop");
        if (body.contains("logprobs") && body["logprobs"].is_boolean() && body["logprobs"].get<bool>())
            refuse("logprobs are not supported", "logprobs");
        if (body.contains("stream") && !body["stream"].is_boolean()) refuse("stream must be true or false", "stream");
    }

    // The question and image bytes of the last user message.
    std::pair<std::string, std::vector<std::byte>> user_message(const json& body) {
        if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
            refuse("messages must be a non-empty array", "messages");
        const json* user = nullptr;
        for (const json& m : body["messages"]) {
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) refuse("each message needs a role", "messages");
            if (m["role"] == "user") user = &m;
        }
        if (!user) refuse("no user message", "messages");
        const json& content = (*user).contains("content") ? (*user)["content"] : json();
        if (content.is_string()) refuse("the user message has no image: give its content as parts, one {\"type\": \"image_url\"}", "messages", "no_image");
        if (!content.is_array()) refuse("the user message's content must be a string or an array of parts", "messages");
        std::string text;
        std::optional<std::vector<std::byte>> image;
        for (const json& part : content) {
            if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) refuse("each content part needs a type", "messages");
            const std::string type = part["type"];
            if (type == "text") {
                if (!part.contains("text") || !part["text"].is_string()) refuse("a text part needs a string \"text\"", "messages");
                if (!text.empty()) text += " ";
                text += part["text"].get<std::string>();
            } else if (type == "image_url") {
                if (image) refuse("the user message has more than one image: give one", "messages", "too_many_images");
                const json& iu = part.contains("image_url") ? part["image_url"] : json();
                const json& url = iu.is_object() && iu.contains("url") ? iu["url"] : iu;
                if (!url.is_string()) refuse("an image_url part needs {\"url\": \"data:image/…;base64,…\"}", "messages");
                const std::string& u = url.get_ref<const std::string&>();
                const size_t comma = u.find(',');
                if (u.rfind("data:", 0) != 0 || comma == std::string::npos || comma < 12 || u.compare(comma - 7, 7, ";base64") != 0)
                    refuse("only data:image/…;base64, URLs are taken (this server fetches nothing)", "messages", "invalid_image_url");
                image = base64_decode(std::string_view(u).substr(comma + 1), "messages");
            } else {
                refuse("content part type '" + type + "' is not supported (text and image_url are)", "messages");
            }
        }
        if (!image) refuse("the user message has no image_url part", "messages", "no_image");
        if (text.empty() && pipeline_->is_vqa()) refuse("the user message has no text part (the question)", "messages", "no_text");
        return {text, std::move(*image)};
    }

    std::future<pix2struct::Answer> submit(pix2struct::Patches patches, int max_tokens,
                                           std::function<bool(std::string_view)> on_text = {}) {
        return batcher_->submit(std::move(patches), {.max_new_tokens = max_tokens, .on_text = std::move(on_text),
                                                    .deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                                                    std::chrono::duration<double>(limits_.timeout_s))});
    }
    std::string finish_reason(const pix2struct::Answer& a) const {
        return !a.ids.empty() && a.ids.back() == pipeline_->generation().eos_token_id ? "stop" : "length";
    }

    void chat(const httplib::Request& req, httplib::Response& res) {
        json body = json::parse(req.body, nullptr, false);
        if (body.is_discarded()) refuse("the body is not valid JSON");
        if (!body.is_object()) refuse("the body must be a JSON object");
        check_sampling(body);
        const int max_tokens = max_tokens_of(body);
        auto [question, bytes] = user_message(body);
        pix2struct::Patches patches = prepare(bytes, question, "messages");
        const std::string id = "chatcmpl-" + std::to_string(++ids_);
        const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        const int64_t real = pix2struct::real_patches(patches.mask);
        if (!body.value("stream", false)) {
            const pix2struct::Answer a = submit(std::move(patches), max_tokens).get();
            const json reply{{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model_name_},
                             {"choices", json::array({{{"index", 0}, {"message", {{"role", "assistant"}, {"content", a.text}}},
                                                       {"logprobs", nullptr}, {"finish_reason", finish_reason(a)}}})},
                             {"usage", {{"prompt_tokens", real}, {"completion_tokens", a.ids.size()},
                                        {"total_tokens", real + int64_t(a.ids.size())}}}};
            res.set_content(reply.dump(), "application/json");
            return;
        }
        // streaming: the batcher's worker hands pieces to this connection's content provider
        struct Channel {
            std::mutex mutex;
            std::condition_variable ready;
            std::deque<std::string> pieces;
            bool gone = false;  // the client closed the connection
        };
        auto channel = std::make_shared<Channel>();
        auto future = std::make_shared<std::future<pix2struct::Answer>>(
            submit(std::move(patches), max_tokens, [channel](std::string_view piece) {
                std::lock_guard lock(channel->mutex);
                channel->pieces.emplace_back(piece);
                channel->ready.notify_one();
                return !channel->gone;
            }));
        auto chunk = [id, created, name = model_name_](const json& delta, const json& finish) {
            return "data: " + json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", name},
                                   {"choices", json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr},
                                                             {"finish_reason", finish}}})}}.dump() + "\n\n";
        };
        auto started = std::make_shared<bool>(false);
        auto counted = std::make_shared<InFlight>(*this);  // until the response (and its provider) is gone
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [this, channel, future, chunk, started, counted](size_t, httplib::DataSink& sink) {
            auto send = [&](const std::string& s) {
                if (sink.write(s.data(), s.size())) return true;
                std::lock_guard lock(channel->mutex);
                channel->gone = true;
                return false;
            };
            if (!*started) {
                *started = true;
                return send(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
            }
            std::unique_lock lock(channel->mutex);
            channel->ready.wait_for(lock, std::chrono::milliseconds(50), [&] { return !channel->pieces.empty(); });
            std::deque<std::string> pieces;
            pieces.swap(channel->pieces);
            lock.unlock();
            for (const std::string& p : pieces)
                if (!send(chunk({{"content", p}}, nullptr))) return false;
            if (future->wait_for(std::chrono::seconds(0)) != std::future_status::ready) return true;
            lock.lock();
            pieces.swap(channel->pieces);  // the last pieces, written before the answer was set
            lock.unlock();
            for (const std::string& p : pieces)
                if (!send(chunk({{"content", p}}, nullptr))) return false;
            std::string tail;
            try {
                tail = chunk(json::object(), finish_reason(future->get()));
            } catch (const std::exception& e) {  // the status line has gone: the error travels as an event
                tail = "data: " + error_body({500, e.what(), "server_error", "", ""}) + "\n\n";
            }
            if (!send(tail + "data: [DONE]\n\n")) return false;
            sink.done();
            return true;
        });
    }

    void answer(const httplib::Request& req, httplib::Response& res) {
        if (!req.is_multipart_form_data()) refuse("send multipart/form-data with an image file and a question (curl -F)");
        if (!req.has_file("image")) refuse("no 'image' field", "image", "no_image");
        const std::string question = req.has_file("question") ? req.get_file_value("question").content : "";
        int max_tokens = 0;
        if (req.has_file("max_tokens")) {
            const std::string& s = req.get_file_value("max_tokens").content;
            char* end = nullptr;
            const long v = std::strtol(s.c_str(), &end, 10);
            if (s.empty() || *end != '\0' || v < 1 || v > max_tokens_)
                refuse("max_tokens must be an integer from 1 to " + std::to_string(max_tokens_), "max_tokens", "invalid_max_tokens");
            max_tokens = int(v);
        }
        const std::string& content = req.get_file_value("image").content;
        const auto* data = reinterpret_cast<const std::byte*>(content.data());
        const pix2struct::Answer a = submit(prepare({data, content.size()}, question, "image"), max_tokens).get();
        const json reply{{"answer", a.text}, {"ids", a.ids}, {"finish_reason", finish_reason(a)}, {"real_patches", a.real_patches},
                         {"timings_ms", {{"encoder", a.times.encoder_ms}, {"decode", a.times.decode_ms}}}};
        res.set_content(reply.dump(), "application/json");
    }

    Limits limits_;
    std::string model_name_;
    std::counting_semaphore<> preprocessing_;
    std::unique_ptr<pix2struct::Pipeline> pipeline_;
    std::unique_ptr<pix2struct::Batcher> batcher_;
    std::atomic<bool> ready_ = false, draining_ = false;
    std::atomic<int> inflight_ = 0;
    std::atomic<int64_t> ids_ = 0;
    int max_tokens_ = 0;
    Metrics metrics_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Serve a Pix2Struct checkpoint over HTTP (OpenAI-compatible chat completions, /v1/answer), with continuous batching."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string model_dir, host = "127.0.0.1", model_name, dtype = "f32", font;
    int port = 8080, threads = 0, max_patches = 0, max_body_mb = 20, max_question_bytes = 2000, max_tokens = 0;
    int64_t sequences = 8, max_queue = 64;
    int64_t max_pixels = 25'000'000;
    int preprocess_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    double timeout_s = 120;
    app.add_option("--model", model_dir, "Model folder (config.json, preprocessor_config.json, model.safetensors, spiece.model), or a Hugging Face repo id, owner/name[@revision]: read from the Hugging Face cache, downloaded into it if missing")
        ->required();
    bool offline = false;
    app.add_flag("--offline", offline, "Never touch the network: a repo id must be in the Hugging Face cache (also HF_HUB_OFFLINE=1)");
    app.add_option("--host", host, "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)");
    app.add_option("--port", port, "Port (0: any free one, printed on the first line)")->check(CLI::Range(0, 65535));
    app.add_option("--model-name", model_name, "The model id /v1/models lists (default: the folder's name)");
    app.add_option("--threads", threads, "CPU threads of the model (0: all)")->check(CLI::Range(0, 1024));
    app.add_option("--dtype", dtype, "Arithmetic of the model on the CPU: f32, int8 or bf16");
    app.add_option("--max-patches", max_patches, "Patch budget of an image (0: the checkpoint's)")->check(CLI::Range(0, 1 << 20));
    app.add_option("--font", font, "TrueType font of the question header (default: Liberation Sans)");
    app.add_option("--sequences", sequences, "Answers decoding at once (continuous batching)")->check(CLI::Range(1, 1024));
    app.add_option("--max-queue", max_queue, "Questions waiting for a slot before 429")->check(CLI::Range(0, 1 << 20));
    app.add_option("--max-tokens", max_tokens, "Most tokens an answer may have (0: the checkpoint's length rule)")->check(CLI::Range(0, 1 << 16));
    app.add_option("--max-body-mb", max_body_mb, "Largest request body, MiB")->check(CLI::Range(1, 1024));
    app.add_option("--max-pixels", max_pixels, "Largest image, width x height")->check(CLI::Range(int64_t(1), int64_t(178'956'970)));
    app.add_option("--max-question-bytes", max_question_bytes, "Longest question, bytes")->check(CLI::Range(1, 1 << 20));
    app.add_option("--timeout-s", timeout_s, "Longest a request may wait and decode, seconds")->check(CLI::Range(0.001, 86400.0));
    app.add_option("--preprocess-threads", preprocess_threads, "Images decoded and preprocessed at once")->check(CLI::Range(1, 1024));
    CLI11_PARSE(app, argc, argv);

    // SIGTERM / SIGINT are taken by one thread (sigwait), blocked in every other
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    const Limits limits{size_t(max_body_mb) << 20, max_pixels, size_t(max_question_bytes), max_tokens, timeout_s};
    if (model_name.empty() && !fs::exists(model_dir))
        if (const auto ref = pix2struct::hub::parse_repo_id(model_dir)) model_name = ref->repo;
    if (model_name.empty()) model_name = fs::path(model_dir).lexically_normal().filename().string();
    if (model_name.empty()) model_name = fs::path(model_dir).lexically_normal().parent_path().filename().string();
    Server server(limits, model_name, preprocess_threads);
    httplib::Server http;
    http.set_payload_max_length(limits.max_body_bytes);
    // a request waiting for its answer holds its thread: room for the running, the queued and a few more
    const int http_threads = int(std::min<int64_t>(sequences + max_queue + 4, 1024));
    http.new_task_queue = [http_threads] { return new httplib::ThreadPool(size_t(http_threads)); };
    server.routes(http);
    // httplib listens with a backlog of 5: a burst of clients would see resets. Its socket is caught here
    // (with httplib's default option, SO_REUSEADDR) and listened on again with the system's maximum.
    int listening = -1;
    http.set_socket_options([&listening](socket_t sock) {
        httplib::default_socket_options(sock);
        listening = sock;
    });
    const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
    if (bound < 0 || listening < 0 || ::listen(listening, SOMAXCONN) != 0) {
        std::fprintf(stderr, "pix2struct-server: cannot listen on %s:%d\n", host.c_str(), port);
        return 1;
    }
    std::printf("listening on http://%s:%d\n", host.c_str(), bound);
    std::fflush(stdout);

    std::atomic<int> exit_status = 0;
    std::thread loader([&] {
        try {
            server.serve_with(pix2struct::Pipeline::load(pix2struct::hub::resolve_model(model_dir, {.offline = offline}), {.threads = threads, .max_patches = max_patches,
                                                                     .dtype = pix2struct::dtype_from_name(dtype), .font_path = font}),
                              {.sequences = sequences, .max_queue = max_queue});
            std::fprintf(stderr, "pix2struct-server: %s loaded; ready\n", model_dir.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "pix2struct-server: %s\n", e.what());
            exit_status = 1;
            stop_when_running(http);
        }
    });
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGTERM || sig == SIGINT) {
            std::fprintf(stderr, "pix2struct-server: signal %d: finishing the requests in flight\n", sig);
            server.drain(http);
        }
    });
    http.listen_after_bind();  // until stop(): then the requests in flight finish
    loader.join();
    server.stop_batcher();
    if (exit_status == 0) std::fprintf(stderr, "pix2struct-server: stopped\n");
    // the stopper waits in sigwait unless a signal stopped the server: end the process without joining it
    std::fflush(stderr);
    std::_Exit(exit_status);
}
