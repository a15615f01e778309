// pix2struct-run — answer a dataset of questions: JSONL in, JSONL out, in batches, resumable, losing nothing.
//
//   pix2struct-run --model pix2struct-ai2d-base --input ai2d/test.jsonl --output answers.jsonl
//   pix2struct-run --model m --input test.jsonl --output answers.3.jsonl --shard 3/8   # one machine's eighth
//
// Input: one JSON object a line, {"id": "q1", "image": "images/q1.png", "question": "…"} with optional
// "answer" (the gold: a string, or a list of accepted answers) and "choices" (candidate answers, for
// --score-choices); image paths are relative to the input file's folder; the id is a string or a number and
// must not repeat. Blank lines are skipped.
// Output: one JSON object per input record, appended and flushed as each batch is answered, in the order the
// batches finish: {"id", "answer", "ids", "real_patches", "batch", "timings_ms"}, or {"id", "error"} for a
// record that failed (not JSON, no image, an unreadable image, …: a bad record never stops the run; a line
// that is not JSON is named by its number, "id": "line N").
// Resuming: run the same command again. Ids already in the output are skipped; a last line torn by a kill is
// cut off first; whatever moment the run was killed at, every id ends up in the output exactly once. To ask
// again for records that failed, delete their lines. Two runs writing one output are refused (a lock).
// Batches: records are loaded and preprocessed by --load-threads threads while the model runs; the ready ones
// are sorted by patch count and taken largest first into batches of at most --batch-patches real patches
// (default: 4 images of the checkpoint's max_patches), each a generate_batch call (one encoder pass, decode
// steps shared). A batch that fails is asked again one record at a time, so only the bad record gets an error.
// --shard i/n answers the records whose id hashes (FNV-1a, 64-bit) to i modulo n: a fixed 1/n whatever the
// line order, so n machines (a Slurm array, a Kubernetes indexed job) split a dataset with no coordination.
// --score-choices answers a record that has candidates ("choices", else the options written in its question,
// "(1) x (2) y") by scoring them (Pipeline::score) instead of generating, and adds their probabilities.
// Progress: a bar on stderr when it is a terminal, else a line every 10 s; --quiet for neither.
// With gold answers, a summary at the end over every answered record of this output (this run's and earlier
// ones'): exact match, ChartQA's relaxed accuracy and DocVQA's ANLS (pix2struct/metrics.hpp), in percent, on
// stderr and as JSON with --summary FILE.
// SIGINT or SIGTERM: the batch in flight is finished and written, then the program exits (status 130 / 143); a
// second one ends it at once (what was written stays whole).
// Exit status 1 with a one-line error for a bad model folder, an unreadable input, an output that is not a
// JSONL this program wrote, a repeated id.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/choices.hpp"
#include "pix2struct/hub.hpp"
#include "pix2struct/metrics.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

std::atomic<int> g_signal{0};
// The first SIGINT/SIGTERM lets the batch in flight finish; a second one ends the program at once.
extern "C" void on_signal(int sig) {
    if (g_signal.exchange(sig) != 0) {
        std::signal(sig, SIG_DFL);
        std::raise(sig);
    }
}

double ms_since(clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

// One input line.
struct Record {
    json id;                         // as given (string or number); "line N" for a line that is not JSON
    std::string key;                 // the id as text: what resuming and sharding go by
    fs::path image;
    std::string question;
    std::vector<std::string> choices;
    std::vector<std::string> golds;  // accepted answers (empty: none given)
    std::string error;               // why the record cannot be asked (then the rest is unset)
};

std::string key_of(const json& id) { return id.is_string() ? id.get<std::string>() : id.dump(); }

// Strings from a field that holds a string or a list of strings.
std::vector<std::string> strings(const json& v, const char* field) {
    if (v.is_string()) return {v.get<std::string>()};
    std::vector<std::string> out;
    if (!v.is_array()) throw pix2struct::Error(std::string("\"") + field + "\" is not a string or a list of strings");
    for (const json& s : v) {
        if (!s.is_string()) throw pix2struct::Error(std::string("\"") + field + "\" holds a value that is not a string");
        out.push_back(s.get<std::string>());
    }
    return out;
}

Record parse_record(const std::string& line, size_t number, const fs::path& folder) {
    Record r;
    json j;
    try {
        j = json::parse(line);
    } catch (const json::exception& e) {
        r.id = "line " + std::to_string(number);
        r.key = r.id.get<std::string>();
        r.error = "line " + std::to_string(number) + ": not JSON (" + e.what() + ")";
        return r;
    }
    if (!j.is_object() || !j.contains("id") || !(j["id"].is_string() || j["id"].is_number_integer())) {
        r.id = "line " + std::to_string(number);
        r.key = r.id.get<std::string>();
        r.error = "line " + std::to_string(number) + ": no \"id\" (a string or an integer)";
        return r;
    }
    r.id = j["id"];
    r.key = key_of(r.id);
    try {
        if (!j.contains("image") || !j["image"].is_string() || j["image"].get<std::string>().empty())
            throw pix2struct::Error("no \"image\" (a path)");
        r.image = folder / j["image"].get<std::string>();
        if (j.contains("question")) {
            if (!j["question"].is_string()) throw pix2struct::Error("\"question\" is not a string");
            r.question = j["question"].get<std::string>();
        }
        if (j.contains("choices")) r.choices = strings(j["choices"], "choices");
        if (j.contains("answer")) r.golds = strings(j["answer"], "answer");
    } catch (const std::exception& e) {
        r.error = "line " + std::to_string(number) + ": " + e.what();
    }
    return r;
}

uint64_t fnv1a(std::string_view s) {
    uint64_t h = 14695981039346656037ull;
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
}

// The output file: its records so far (id → record), then appends. A torn last line is cut off; a complete
// line that is not a record of ours stops the program rather than being written over.
class Output {
public:
    explicit Output(const fs::path& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("cannot open it (" + std::string(std::strerror(errno)) + ")");
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) fail("another pix2struct-run is writing it");
        std::string text;
        {
            std::ifstream in(path, std::ios::binary);
            text.assign(std::istreambuf_iterator<char>(in), {});
        }
        size_t line = 0, at = 0;
        for (size_t end; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
            ++line;
            json j = json::parse(text.begin() + std::ptrdiff_t(at), text.begin() + std::ptrdiff_t(end), nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains("id"))
                fail("line " + std::to_string(line) + " is not a record written by pix2struct-run; not appending to it");
            std::string key = key_of(j["id"]);
            records_[std::move(key)] = std::move(j);
        }
        if (at < text.size()) {  // killed mid-write: the partial line goes
            if (::ftruncate(fd_, off_t(at)) != 0) fail("cannot cut off its torn last line (" + std::string(std::strerror(errno)) + ")");
            torn_ = true;
        }
    }
    ~Output() { ::close(fd_); }
    Output(const Output&) = delete;
    Output& operator=(const Output&) = delete;

    bool torn() const { return torn_; }
    bool has(const std::string& key) const { return records_.count(key) > 0; }
    const std::unordered_map<std::string, json>& records() const { return records_; }

    // Appends the records as whole lines and flushes them to the disk.
    void append(const std::vector<json>& batch) {
        std::string text;
        for (const json& j : batch) text += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        for (size_t done = 0; done < text.size();) {
            const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("cannot write (" + std::string(std::strerror(errno)) + ")");
            done += size_t(n);
        }
        ::fdatasync(fd_);
        for (const json& j : batch) records_[key_of(j["id"])] = j;
    }

private:
    [[noreturn]] void fail(const std::string& what) const { throw pix2struct::Error(path_.string() + ": " + what); }
    fs::path path_;
    int fd_ = -1;
    bool torn_ = false;
    std::unordered_map<std::string, json> records_;
};

// A record made ready by a loader thread: its model input (or its image, to score choices), or why not.
struct Ready {
    size_t index = 0;  // into the pending records
    pix2struct::Patches patches;
    std::optional<pix2struct::Image> image;   // --score-choices: the candidates are scored from the image
    std::vector<std::string> candidates;
    std::string error;
    double preprocess_ms = 0;
};

// Loader threads fill a pool of ready records, bounded in real patches and count; the model thread takes
// batches from it, largest first.
class Loader {
public:
    Loader(const std::vector<Record>& records, const pix2struct::Pipeline& pipe, bool score_choices,
           int64_t batch_patches, int threads)
        : records_(records), pipe_(pipe), score_choices_(score_choices), batch_patches_(batch_patches), live_(threads) {
        for (int t = 0; t < threads; ++t) threads_.emplace_back([this] { work(); });
    }
    ~Loader() {
        stop();
        threads_.clear();  // joins
    }

    void stop() {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        changed_.notify_all();
    }

    // The next batch: ready records of at most batch_patches real patches together (at least one record),
    // the largest first; records that failed to load come alone. Empty when everything has been taken.
    std::vector<Ready> next() {
        std::unique_lock lock(mutex_);
        auto alone = [&] { return std::find_if(pool_.begin(), pool_.end(), asked_alone); };
        changed_.wait(lock, [&] {
            return stopping_ || live_ == 0 || pool_real_ >= batch_patches_ || full() || alone() != pool_.end();
        });
        if (pool_.empty()) return {};
        std::vector<Ready> batch;
        if (const auto single = alone(); single != pool_.end()) {
            batch.push_back(std::move(*single));
            pool_.erase(single);
        } else {
            std::sort(pool_.begin(), pool_.end(), [](const Ready& a, const Ready& b) { return real(a) > real(b); });
            int64_t sum = 0;
            size_t n = 0;
            while (n < pool_.size() && (n == 0 || sum + real(pool_[n]) <= batch_patches_)) sum += real(pool_[n++]);
            std::move(pool_.begin(), pool_.begin() + std::ptrdiff_t(n), std::back_inserter(batch));
            pool_.erase(pool_.begin(), pool_.begin() + std::ptrdiff_t(n));
        }
        for (const Ready& r : batch) pool_real_ -= real(r);
        changed_.notify_all();
        return batch;
    }

private:
    static int64_t real(const Ready& r) { return r.patches.num_real(); }
    // A record that failed to load, or one to score, is a batch of its own.
    static bool asked_alone(const Ready& r) { return !r.error.empty() || r.image.has_value(); }
    bool full() const { return pool_real_ >= 2 * batch_patches_ || pool_.size() >= 32; }

    void work() {
        for (;;) {
            const size_t i = next_.fetch_add(1);
            if (i >= records_.size()) break;
            Ready r = load(i);
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return stopping_ || !full(); });
            if (stopping_) break;
            pool_real_ += real(r);
            pool_.push_back(std::move(r));
            changed_.notify_all();
        }
        std::lock_guard lock(mutex_);
        --live_;
        changed_.notify_all();
    }

    Ready load(size_t i) const {
        const Record& rec = records_[i];
        Ready r;
        r.index = i;
        if (!rec.error.empty()) {
            r.error = rec.error;
            return r;
        }
        const auto t0 = clock_type::now();
        try {
            pix2struct::Image image = pix2struct::load_image(rec.image);
            if (score_choices_) r.candidates = rec.choices.empty() ? pix2struct::parse_choices(rec.question) : rec.choices;
            if (!r.candidates.empty()) r.image = std::move(image);
            else r.patches = pipe_.prepare(image, rec.question);
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        r.preprocess_ms = ms_since(t0);
        return r;
    }

    const std::vector<Record>& records_;
    const pix2struct::Pipeline& pipe_;
    const bool score_choices_;
    const int64_t batch_patches_;
    int live_;  // loader threads still working
    std::atomic<size_t> next_{0};
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Ready> pool_;
    int64_t pool_real_ = 0;
    bool stopping_ = false;
    std::vector<std::jthread> threads_;  // last: joined before the rest goes
};

// Done/total, answers per second, time left: a bar redrawn on a terminal, else a line every 10 s.
class Progress {
public:
    Progress(size_t done, size_t total, bool quiet)
        : done_(done), total_(total), quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

    void update(size_t newly, size_t errors) {
        done_ += newly;
        answered_ += newly;
        errors_ += errors;
        if (quiet_) return;
        const double seconds = ms_since(start_) / 1000.0;
        if (!tty_ && seconds - last_ < 10.0 && done_ < total_) return;
        last_ = seconds;
        const double rate = seconds > 0 ? double(answered_) / seconds : 0.0;
        const double left = rate > 0 ? double(total_ - done_) / rate : 0.0;
        char eta[32];
        std::snprintf(eta, sizeof eta, "%dm%02ds", int(left) / 60, int(left) % 60);
        if (tty_) {
            const int width = 30, filled = total_ ? int(double(width) * double(done_) / double(total_)) : width;
            std::fprintf(stderr, "\r\033[K[%s%s] %zu/%zu  %.2f answers/s  ETA %s%s", std::string(size_t(filled), '#').c_str(),
                         std::string(size_t(width - filled), ' ').c_str(), done_, total_, rate, eta,
                         errors_ ? (" (" + std::to_string(errors_) + " errors)").c_str() : "");
        } else {
            std::fprintf(stderr, "pix2struct-run: %zu/%zu answered, %zu errors, %.2f answers/s, ETA %s\n", done_, total_,
                         errors_, rate, eta);
        }
        std::fflush(stderr);
    }
    void finish() const {
        if (!quiet_ && tty_) std::fprintf(stderr, "\n");
    }

private:
    size_t done_, total_, answered_ = 0, errors_ = 0;
    bool quiet_, tty_;
    clock_type::time_point start_ = clock_type::now();
    double last_ = 0;
};

json answer_record(const Record& rec, const pix2struct::Answer& a, size_t batch, double preprocess_ms) {
    return {{"id", rec.id},
            {"answer", a.text},
            {"ids", a.ids},
            {"real_patches", a.real_patches},
            {"batch", batch},
            {"timings_ms", {{"preprocess", preprocess_ms}, {"encoder", a.times.encoder_ms}, {"decode", a.times.decode_ms}}}};
}

json error_record(const Record& rec, const std::string& error) { return {{"id", rec.id}, {"error", error}}; }

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Answer a dataset of questions (JSONL in, JSONL out) with a Pix2Struct checkpoint: batched, resumable."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string model_dir, input, output, shard, summary_path, dtype = "f32";
    int max_new_tokens = 0, threads = 0, load_threads = 1, max_patches = 0;
    int64_t batch_patches = 0;
    bool quiet = false, score_choices = false;
    app.add_option("--model", model_dir, "Model folder (config.json, preprocessor_config.json, model.safetensors, spiece.model), or a Hugging Face repo id, owner/name[@revision]: read from the Hugging Face cache, downloaded into it if missing")
        ->required();
    bool offline = false;
    app.add_flag("--offline", offline, "Never touch the network: a repo id must be in the Hugging Face cache (also HF_HUB_OFFLINE=1)");
    app.add_option("--input", input, "JSONL: one {\"id\", \"image\", \"question\"[, \"answer\"][, \"choices\"]} a line")
        ->required()->check(CLI::ExistingFile);
    app.add_option("--output", output, "JSONL of answers: appended; records already there are not asked again")->required();
    app.add_option("--max-new-tokens", max_new_tokens, "Most tokens an answer has (0: the checkpoint's generation config)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--batch-patches", batch_patches, "Most real patches in one batch (0: 4 images of max_patches)")
        ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
    app.add_option("--shard", shard, "i/n: answer only the records whose id hashes to i of n (0 ≤ i < n)");
    app.add_option("--summary", summary_path, "Write the metrics over the answers with a gold \"answer\" as JSON");
    app.add_option("--threads", threads, "CPU threads of the model (0: all)")->check(CLI::Range(0, 1024));
    app.add_option("--load-threads", load_threads, "Threads that load and preprocess images while the model runs")
        ->check(CLI::Range(1, 64))->capture_default_str();
    app.add_option("--max-patches", max_patches, "Patch budget of an image (0: the checkpoint's preprocessor_config.json)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--dtype", dtype, "Arithmetic of the model on the CPU: f32, int8 or bf16 (see pix2struct-vqa --help)")
        ->check(CLI::IsMember({"f32", "int8", "bf16"}))->capture_default_str();
    app.add_flag("--score-choices", score_choices, "Answer records with candidates (\"choices\", or the options in the "
                 "question) by scoring them instead of generating");
    app.add_flag("--quiet", quiet, "No progress on stderr");
    CLI11_PARSE(app, argc, argv);

    try {
        uint64_t shard_index = 0, shard_count = 1;
        if (!shard.empty()) {
            unsigned long long i = 0, n = 0;
            char rest = 0;
            if (std::sscanf(shard.c_str(), "%llu/%llu%c", &i, &n, &rest) != 2 || n == 0 || i >= n)
                throw pix2struct::Error("--shard " + shard + ": give i/n with 0 <= i < n (e.g. 0/4)");
            shard_index = i;
            shard_count = n;
        }

        // the records of this shard, in input order
        std::ifstream in(input, std::ios::binary);
        if (!in) throw pix2struct::Error(input + ": cannot read it");
        const fs::path folder = fs::path(input).parent_path();
        std::vector<Record> records;
        std::unordered_map<std::string, size_t> line_of;
        std::string line;
        for (size_t number = 1; std::getline(in, line); ++number) {
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            Record r = parse_record(line, number, folder);
            if (const auto [it, fresh] = line_of.emplace(r.key, number); !fresh)
                throw pix2struct::Error(input + ":" + std::to_string(number) + ": id " + r.key + " is also the id on line " +
                                        std::to_string(it->second) + " (every id answers once: make them unique)");
            if (fnv1a(r.key) % shard_count == shard_index) records.push_back(std::move(r));
        }

        Output out(output);
        if (out.torn() && !quiet) std::fprintf(stderr, "pix2struct-run: %s: cut off a torn last line (killed mid-write)\n", output.c_str());
        std::vector<Record> pending;
        for (const Record& r : records)
            if (!out.has(r.key)) pending.push_back(r);
        const size_t already = records.size() - pending.size();
        if (!quiet)
            std::fprintf(stderr, "pix2struct-run: %zu records%s, %zu answered already, %zu to ask\n", records.size(),
                         shard.empty() ? "" : (" in shard " + shard).c_str(), already, pending.size());

        if (!pending.empty()) {
            std::signal(SIGINT, on_signal);
            std::signal(SIGTERM, on_signal);
            pix2struct::Pipeline pipe = pix2struct::Pipeline::load(
                pix2struct::hub::resolve_model(model_dir, {.offline = offline}), {.threads = threads, .max_patches = max_patches, .dtype = pix2struct::dtype_from_name(dtype)});
            if (batch_patches == 0) batch_patches = 4 * int64_t(pipe.max_patches());
            Progress progress(already, records.size(), quiet);
            Loader loader(pending, pipe, score_choices, batch_patches, load_threads);
            for (std::vector<Ready> batch; g_signal.load() == 0 && !(batch = loader.next()).empty();) {
                std::vector<json> lines;
                size_t errors = 0;
                auto failed = [&](const Ready& r, const std::string& why) {
                    lines.push_back(error_record(pending[r.index], why));
                    ++errors;
                };
                if (!batch[0].error.empty()) {
                    failed(batch[0], batch[0].error);
                } else if (batch[0].image) {  // scored candidates
                    const Ready& r = batch[0];
                    const Record& rec = pending[r.index];
                    try {
                        const auto t0 = clock_type::now();
                        const std::vector<pix2struct::Choice> scored = pipe.score(*r.image, rec.question, r.candidates);
                        size_t best = 0;
                        json list = json::array();
                        for (size_t c = 0; c < scored.size(); ++c) {
                            if (scored[c].logprob > scored[best].logprob) best = c;
                            list.push_back({{"text", scored[c].text}, {"logprob", scored[c].logprob}, {"prob", scored[c].prob}});
                        }
                        lines.push_back({{"id", rec.id}, {"answer", scored[best].text}, {"choices", list},
                                         {"timings_ms", {{"preprocess", r.preprocess_ms}, {"score", ms_since(t0)}}}});
                    } catch (const std::exception& e) {
                        failed(r, e.what());
                    }
                } else {
                    std::vector<pix2struct::Patches> patches;
                    std::vector<std::string> prompts;
                    for (Ready& r : batch) {
                        patches.push_back(std::move(r.patches));
                        prompts.push_back(pipe.is_vqa() ? std::string{} : pending[r.index].question);
                    }
                    try {
                        const std::vector<pix2struct::Answer> answers = pipe.run_batch(patches, prompts, max_new_tokens);
                        for (size_t i = 0; i < batch.size(); ++i)
                            lines.push_back(answer_record(pending[batch[i].index], answers[i], batch.size(), batch[i].preprocess_ms));
                    } catch (const std::exception&) {  // one at a time: only the record at fault gets the error
                        for (size_t i = 0; i < batch.size(); ++i) {
                            try {
                                const std::vector<pix2struct::Answer> one =
                                    pipe.run_batch({&patches[i], 1}, {&prompts[i], 1}, max_new_tokens);
                                lines.push_back(answer_record(pending[batch[i].index], one[0], 1, batch[i].preprocess_ms));
                            } catch (const std::exception& e) {
                                failed(batch[i], e.what());
                            }
                        }
                    }
                }
                out.append(lines);
                progress.update(lines.size(), errors);
            }
            loader.stop();
            progress.finish();
            if (const int sig = g_signal.load(); sig != 0) {
                if (!quiet) std::fprintf(stderr, "pix2struct-run: stopped by signal %d; run the same command to go on\n", sig);
                return 128 + sig;
            }
        }

        // the metrics over every answered record of this shard that has a gold answer
        pix2struct::metrics::Scores scores;
        size_t errors = 0;
        for (const Record& r : records) {
            const auto it = out.records().find(r.key);
            if (it == out.records().end()) continue;
            if (it->second.contains("error")) ++errors;
            else if (!r.golds.empty() && it->second.contains("answer") && it->second["answer"].is_string())
                scores.add(it->second["answer"].get<std::string>(), r.golds);
        }
        const json summary = {{"records", records.size()}, {"errors", errors}, {"with_gold", scores.count},
                              {"exact_match", scores.percent(scores.exact)},
                              {"relaxed_accuracy", scores.percent(scores.relaxed)},
                              {"anls", scores.percent(scores.anls)}};
        if (!quiet) {
            std::fprintf(stderr, "pix2struct-run: %zu records, %zu errors", records.size(), errors);
            if (scores.count > 0)
                std::fprintf(stderr, "; over %lld with a gold answer: exact match %.2f, relaxed accuracy %.2f, ANLS %.2f",
                             (long long)scores.count, scores.percent(scores.exact), scores.percent(scores.relaxed),
                             scores.percent(scores.anls));
            std::fprintf(stderr, "\n");
        }
        if (!summary_path.empty()) {
            std::ofstream s(summary_path);
            if (!(s << summary.dump(2) << "\n")) throw pix2struct::Error(summary_path + ": cannot write the summary");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pix2struct-run: %s\n", e.what());
        return 1;
    }
    return 0;
}
