// pix2struct/batcher.hpp — many callers, one model: questions from any thread, answered with continuous
// batching (model/continuous.hpp) by one worker thread.
//
//   pix2struct::Batcher batcher(pipeline, {.sequences = 16});
//   std::future<pix2struct::Answer> f = batcher.submit(pipeline.prepare(image, question));   // any thread
//   f.get().text
//
// A question submitted while others decode joins them at the next step boundary (the newcomers' encoder
// pass is one batch); a finished answer leaves at once and its future is ready. Each answer is the one
// Pipeline::run gives alone (greedy decoding). submit() refuses (BatcherFull) when `max_queue` questions
// wait already; a question past its deadline, or whose on_text returned false, ends with BatcherTimeout /
// its text so far. shutdown() (and the destructor) stops taking questions, answers every one taken, and
// joins the worker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pix2struct/basic_pipeline.hpp"

namespace pix2struct {

struct BatcherOptions {
    int64_t sequences = 8;       // answers decoding at once
    int64_t rows = 0;            // patches (encoder rows) of the images of those answers (0: sequences · max_patches)
    int64_t max_new_tokens = 0;  // the most a question may ask for (0: the generation config's length rule)
    int64_t max_queue = 64;      // questions waiting for a slot; one more is refused with BatcherFull
};

// submit() when max_queue questions wait, or after shutdown(): retry later (HTTP 429 / 503).
struct BatcherFull : Error {
    using Error::Error;
};
// A question past its SubmitOptions::deadline.
struct BatcherTimeout : Error {
    using Error::Error;
};

struct SubmitOptions {
    int max_new_tokens = 0;  // 0: BatcherOptions::max_new_tokens (the generation config's rule)
    std::string prompt{};    // captioning checkpoints: the start of the caption
    // Called on the worker thread with the text each new token adds (streaming); return false to stop (the
    // answer then holds the text so far). Keep it short: every answer in the batch waits for it.
    std::function<bool(std::string_view piece)> on_text{};
    std::optional<std::chrono::steady_clock::time_point> deadline{};  // then the future throws BatcherTimeout
};

class Batcher {
public:
    struct Stats {
        int64_t queued = 0, running = 0;           // now
        int64_t answered = 0, failed = 0, tokens = 0;  // since construction
    };

    Batcher(Pipeline& pipeline, const BatcherOptions& options = {}) : pipeline_(&pipeline.base()) {
        PipelineBase& p = *pipeline_;
        max_new_ = options.max_new_tokens > 0 ? options.max_new_tokens : p.config().generation.new_tokens();
        const int64_t patches = p.preprocess_options().max_patches;
        ContinuousOptions c{.sequences = options.sequences,
                            .positions = 1 + max_new_ + 64,  // a caption prompt may take up to 64 tokens
                            .rows = options.rows > 0 ? options.rows : options.sequences * patches};
        if (c.rows < patches)
            detail::fail("Batcher: rows ", c.rows, " cannot hold one image of max_patches ", patches);
        max_queue_ = options.max_queue;
        decoder_ = p.continuous(c);
        worker_ = std::thread([this] { loop(); });
    }
    Batcher(const Batcher&) = delete;
    Batcher& operator=(const Batcher&) = delete;
    ~Batcher() { shutdown(); }

    // Queues prepared patches (Pipeline::prepare); the future holds the answer, or the Error that ended it.
    std::future<Answer> submit(Patches patches, SubmitOptions options = {}) {
        auto job = std::make_unique<Job>();
        if (options.max_new_tokens < 0 || options.max_new_tokens > max_new_)
            throw Error("max_new_tokens " + std::to_string(options.max_new_tokens) + " is outside [0, " +
                        std::to_string(max_new_) + "]");
        job->patches = std::move(patches);
        job->request = pipeline_->request_for(job->patches, options.prompt,
                                              int(options.max_new_tokens > 0 ? options.max_new_tokens : max_new_));
        if (job->request.options.decoder_prompt.size() > 64) throw Error("the caption prompt is over 64 tokens");
        job->rows = real_patches(job->patches.mask);
        job->options = std::move(options);
        std::future<Answer> f = job->promise.get_future();
        {
            std::lock_guard lock(mutex_);
            if (stopping_) throw BatcherFull("the batcher is shutting down");
            if (int64_t(queue_.size()) >= max_queue_)
                throw BatcherFull(std::to_string(queue_.size()) + " questions are waiting already (max_queue)");
            queue_.push_back(std::move(job));
        }
        wake_.notify_one();
        return f;
    }

    // Stops taking questions, answers those taken, joins the worker. Idempotent.
    void shutdown() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        if (worker_.joinable()) worker_.join();
    }

    // The most new tokens a question may ask for (BatcherOptions::max_new_tokens, else the generation config's rule).
    int64_t max_new_tokens() const { return max_new_; }

    Stats stats() const {
        std::lock_guard lock(mutex_);
        Stats s = stats_;
        s.queued = int64_t(queue_.size());
        s.running = running_;
        return s;
    }

private:
    struct Job {
        Patches patches;
        GenerateRequest request;
        int64_t rows = 0;
        SubmitOptions options;
        std::promise<Answer> promise;
        std::unique_ptr<TextStream> stream;  // with on_text only: the text each token adds
        Answer answer;
    };
    using clock = std::chrono::steady_clock;
    static double ms(clock::time_point a, clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    }

    void loop() {
        std::unordered_map<int64_t, std::unique_ptr<Job>> running;  // by sequence id
        for (;;) {
            std::vector<std::unique_ptr<Job>> fresh;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return !queue_.empty() || !running.empty() || stopping_; });
                if (queue_.empty() && running.empty()) return;  // stopping, nothing left
                expire_queued();
                // first come, first served: newcomers join while the next one fits
                std::vector<int64_t> rows;
                while (!queue_.empty()) {
                    rows.push_back(queue_.front()->rows);
                    if (!decoder_->fits(rows)) break;
                    fresh.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                running_ = int64_t(running.size() + fresh.size());
            }
            if (!fresh.empty()) admit(fresh, running);
            if (running.empty()) continue;
            const auto t0 = clock::now();
            std::vector<ContinuousToken> tokens;
            try {
                tokens = decoder_->step();
            } catch (...) {  // every running answer fails with it; the decoder's sequences are dropped
                for (auto& [id, job] : running) {
                    decoder_->cancel(id);
                    fail(*job, std::current_exception());
                }
                running.clear();
                continue;
            }
            const double step_ms = ms(t0, clock::now());
            int64_t produced = 0;
            for (const ContinuousToken& t : tokens) {
                Job& job = *running.at(t.sequence);
                bool done = t.done;
                if (t.token >= 0) {
                    ++produced;
                    job.answer.ids.push_back(t.token);
                    job.answer.times.token_ms.push_back(step_ms);
                    job.answer.times.decode_ms += step_ms;
                    if (job.stream) {
                        const std::string piece = job.stream->push(t.token);
                        if (!piece.empty() && !job.options.on_text(piece)) done = true;
                    }
                }
                if (!done && job.options.deadline && clock::now() > *job.options.deadline) {
                    fail(job, std::make_exception_ptr(BatcherTimeout("the answer took longer than its deadline")));
                    decoder_->cancel(t.sequence);
                    running.erase(t.sequence);
                    continue;
                }
                if (!done) continue;
                if (!t.done) decoder_->cancel(t.sequence);
                finish(job);
                running.erase(t.sequence);
            }
            std::lock_guard lock(mutex_);
            stats_.tokens += produced;
            running_ = int64_t(running.size());
        }
    }

    // Encodes the newcomers in one pass and starts their sequences.
    void admit(std::vector<std::unique_ptr<Job>>& fresh, std::unordered_map<int64_t, std::unique_ptr<Job>>& running) {
        std::vector<GenerateRequest> requests;
        for (const auto& job : fresh) requests.push_back(job->request);
        const auto t0 = clock::now();
        std::vector<int64_t> ids;
        try {
            ids = decoder_->admit(requests);
        } catch (...) {
            for (auto& job : fresh) fail(*job, std::current_exception());
            return;
        }
        const double encoder_ms = ms(t0, clock::now());
        for (size_t i = 0; i < fresh.size(); ++i) {
            Job& job = *fresh[i];
            job.answer.ids = job.request.options.decoder_prompt;
            job.answer.real_patches = job.rows;
            job.answer.times.encoder_ms = encoder_ms;  // with the cross K/V projection, for the newcomers together
            if (job.options.on_text) {
                job.stream = std::make_unique<TextStream>(pipeline_->tokenizer(), job.answer.ids);
                if (!job.stream->text().empty()) job.options.on_text(job.stream->text());
            }
            running.emplace(ids[i], std::move(fresh[i]));
        }
    }

    // (counted before the future is ready: a caller that has its answer sees it in stats())
    void finish(Job& job) {
        job.answer.text = pipeline_->tokenizer().decode(job.answer.ids);
        {
            std::lock_guard lock(mutex_);
            ++stats_.answered;
        }
        job.promise.set_value(std::move(job.answer));
    }
    void fail(Job& job, std::exception_ptr e) {
        {
            std::lock_guard lock(mutex_);
            ++stats_.failed;
        }
        job.promise.set_exception(std::move(e));
    }
    // Fails the queued questions past their deadline (mutex_ held).
    void expire_queued() {
        const auto now = clock::now();
        for (auto it = queue_.begin(); it != queue_.end();) {
            if ((*it)->options.deadline && now > *(*it)->options.deadline) {
                ++stats_.failed;
                (*it)->promise.set_exception(std::make_exception_ptr(BatcherTimeout("the question waited past its deadline")));
                it = queue_.erase(it);
            } else {
                ++it;
            }
        }
    }

    PipelineBase* pipeline_;
    std::unique_ptr<ContinuousDecoder> decoder_;
    int64_t max_new_ = 0, max_queue_ = 0, running_ = 0;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::unique_ptr<Job>> queue_;
    Stats stats_;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace pix2struct
