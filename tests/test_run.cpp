// pix2struct-run end to end (the program run as a user runs it) on the tiny checkpoint: answers equal to the
// reference's (goldens/tiny.json) in batches, bad records answered with an error without stopping the run,
// resuming after SIGKILL at random moments with every id answered exactly once, shards that partition the
// dataset, the summary's metrics, and what it refuses.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "programs.hpp"

extern char** environ;

namespace fs = std::filesystem;
using nlohmann::json;
using p2s_test::quoted, p2s_test::read_json, p2s_test::run;

namespace {
const fs::path kModels = fs::path(PIX2STRUCT_TEST_DATA) / "models";
const fs::path kRun = p2s_test::program("pix2struct-run");

// A fresh folder, removed at the end of the test case.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "p2s_run_XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() { fs::remove_all(path); }
};

// "q<i>" (built by append: GCC 12's -Wrestrict misreads "q" + std::to_string(i) at -O3)
std::string record_id(int i) { return std::string("q").append(std::to_string(i)); }

// The reference's VQA cases (image, question, generated ids without the start token).
struct Case {
    std::string image, question;
    std::vector<int64_t> ids;
    std::string text;
};
std::vector<Case> reference_cases() {
    std::vector<Case> cases;
    const json goldens = read_json(kModels / "goldens" / "tiny.json");
    for (const json& c : goldens["pipeline"]) {
        if (!c["is_vqa"].get<bool>()) continue;
        const auto ids = c["ids"].get<std::vector<int64_t>>();
        cases.push_back({(fs::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>()).string(),
                         c["question"].get<std::string>(), {ids.begin() + 1, ids.end()}, c["text"].get<std::string>()});
    }
    REQUIRE(cases.size() >= 3);
    return cases;
}

// `n` records cycling through the reference's cases (record "q<i>" asks case i % cases), written to
// dir/in.jsonl; `extra` lines are appended as they are.
fs::path write_dataset(const fs::path& dir, const std::vector<Case>& cases, int n, const std::vector<std::string>& extra = {}) {
    std::ofstream in(dir / "in.jsonl");
    for (int i = 0; i < n; ++i) {
        const Case& c = cases[size_t(i) % cases.size()];
        in << json{{"id", record_id(i)}, {"image", c.image}, {"question", c.question}}.dump() << "\n";
    }
    for (const std::string& line : extra) in << line << "\n";
    return dir / "in.jsonl";
}

std::string runner(const fs::path& in, const fs::path& out, const std::string& args = "") {
    return kRun.string() + " --threads 2 --model " + quoted((kModels / "tiny").string()) + " --input " +
           quoted(in.string()) + " --output " + quoted(out.string()) + " " + args;
}

// The output's records by id; every line must be a whole JSON record and no id may repeat.
std::map<std::string, json> read_output(const fs::path& out) {
    std::ifstream f(out, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(f)), {});
    REQUIRE((text.empty() || text.back() == '\n'));
    std::map<std::string, json> records;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        const json j = json::parse(line);  // throws on a torn line
        const std::string id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
        INFO("id ", id);
        CHECK(records.emplace(id, j).second);  // exactly once
    }
    return records;
}

void check_answers(const std::map<std::string, json>& records, const std::vector<Case>& cases, int n) {
    CHECK(records.size() == size_t(n));
    for (int i = 0; i < n; ++i) {
        const std::string id = record_id(i);
        INFO("record ", id);
        REQUIRE(records.count(id) == 1);
        const json& r = records.at(id);
        REQUIRE(r.contains("ids"));
        CHECK(r["ids"].get<std::vector<int64_t>>() == cases[size_t(i) % cases.size()].ids);
        CHECK(r["answer"] == cases[size_t(i) % cases.size()].text);
    }
}
}  // namespace

TEST_CASE("pix2struct-run: every record answered as the reference answers it, in batches of any patch budget") {
    REQUIRE(fs::exists(kRun));
    const auto cases = reference_cases();
    TempDir dir;
    const fs::path in = write_dataset(dir.path, cases, 9);
    for (const char* budget : {"64", "200", "10000"}) {  // the tiny checkpoint's images have ≤ 64 patches
        CAPTURE(budget);
        const fs::path out = dir.path / (std::string("out-") + budget + ".jsonl");
        int status = 0;
        run(runner(in, out, std::string("--quiet --batch-patches ") + budget), status);
        REQUIRE(status == 0);
        const auto records = read_output(out);
        check_answers(records, cases, 9);
        size_t largest = 0;
        for (const auto& [id, r] : records) largest = std::max(largest, r["batch"].get<size_t>());
        CHECK(largest == (std::string(budget) == "64" ? 1u : std::string(budget) == "200" ? 3u : 9u));
    }
}

TEST_CASE("pix2struct-run: bad records get an error naming the problem; the others are answered") {
    const auto cases = reference_cases();
    TempDir dir;
    std::ofstream(dir.path / "broken.png") << "not an image at all";
    const fs::path in = write_dataset(dir.path, cases, 3,
                                      {R"({"id": "missing", "image": "no-such-file.png", "question": "What?"})",
                                       R"({"id": "broken", "image": "broken.png", "question": "What?"})",
                                       R"({"id": 7, "question": "What?"})",
                                       R"({"image": "x.png"})",
                                       "{not json",
                                       "",
                                       R"({"id": "choices", "image": "x.png", "choices": 3})"});
    const fs::path out = dir.path / "out.jsonl";
    int status = 0;
    run(runner(in, out, "--quiet"), status);
    REQUIRE(status == 0);
    auto records = read_output(out);
    CHECK(records.size() == 3 + 6);  // the blank line is not a record
    auto error_of = [&](const std::string& id) {
        INFO("record ", id);
        REQUIRE(records.count(id) == 1);
        REQUIRE(records[id].contains("error"));
        CHECK_FALSE(records[id].contains("answer"));
        return records[id]["error"].get<std::string>();
    };
    CHECK(error_of("missing").find("no-such-file.png") != std::string::npos);
    CHECK(error_of("broken").find("broken.png") != std::string::npos);
    CHECK(error_of("7").find("\"image\"") != std::string::npos);
    CHECK(error_of("line 7").find("\"id\"") != std::string::npos);
    CHECK(error_of("line 8").find("not JSON") != std::string::npos);
    CHECK(error_of("choices").find("\"choices\"") != std::string::npos);
    records.erase("missing"), records.erase("broken"), records.erase("7"), records.erase("line 7"), records.erase("line 8"),
        records.erase("choices");
    check_answers(records, cases, 3);

    // resuming asks nothing again: errors stay answered until their lines are deleted
    const auto before = fs::file_size(out);
    const std::string log = run(runner(in, out) + " 2>&1", status);
    CHECK(status == 0);
    CHECK(log.find("9 answered already, 0 to ask") != std::string::npos);
    CHECK(fs::file_size(out) == before);
}

TEST_CASE("pix2struct-run: killed at random moments, resumed, every id answered exactly once with the reference's answer") {
    const auto cases = reference_cases();
    TempDir dir;
    const int n = 96;
    const fs::path in = write_dataset(dir.path, cases, n);
    const fs::path out = dir.path / "out.jsonl";
    const std::string model = (kModels / "tiny").string(), input = in.string(), output = out.string();
    // one record a batch: an append after each record, so kills land before, during and after writes
    std::vector<std::string> args = {kRun.string(), "--threads", "2", "--quiet", "--batch-patches", "1", "--model", model,
                                     "--input", input, "--output", output};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    auto start = [&] {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        pid_t pid = 0;
        REQUIRE(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) == 0);
        posix_spawn_file_actions_destroy(&actions);
        return pid;
    };
    // how long a whole run takes here, to spread the kills over it
    auto t0 = std::chrono::steady_clock::now();
    int w = 0;
    REQUIRE(::waitpid(start(), &w, 0) > 0);
    REQUIRE((WIFEXITED(w) && WEXITSTATUS(w) == 0));
    const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
    check_answers(read_output(out), cases, n);
    fs::remove(out);

    // Kills spread over the first 60% of a whole run's time: each resumed run has less left, so most are
    // killed part-way; the output is whatever each left (possibly a torn last line), read only by the next run.
    auto lines_in_output = [&] {
        std::ifstream f(out, std::ios::binary);
        return std::count(std::istreambuf_iterator<char>(f), {}, '\n');
    };
    std::mt19937 random(20261206);
    std::uniform_int_distribution<int64_t> moment(0, whole.count() * 6 / 10);
    int kills = 0, part_way = 0, finished = 0;
    for (int attempt = 0; attempt < 60 && !finished; ++attempt) {
        const pid_t pid = start();
        std::this_thread::sleep_for(std::chrono::microseconds(moment(random)));
        ::kill(pid, SIGKILL);
        REQUIRE(::waitpid(pid, &w, 0) == pid);
        if (WIFSIGNALED(w)) {
            ++kills;
            const auto lines = lines_in_output();
            part_way += lines > 0 && lines < n;
        } else {
            finished = WIFEXITED(w) && WEXITSTATUS(w) == 0;
        }
    }
    MESSAGE(kills, " runs killed (", part_way, " with part of the answers written) before one finished on its own; a whole "
            "run takes ", whole.count() / 1000, " ms");
    CHECK(kills >= 3);
    CHECK(part_way >= 2);
    if (!finished) {  // the last pieces
        REQUIRE(::waitpid(start(), &w, 0) > 0);
        REQUIRE((WIFEXITED(w) && WEXITSTATUS(w) == 0));
    }
    check_answers(read_output(out), cases, n);
}

TEST_CASE("pix2struct-run: a torn last line is cut off and its record asked again") {
    const auto cases = reference_cases();
    TempDir dir;
    const fs::path in = write_dataset(dir.path, cases, 4), out = dir.path / "out.jsonl";
    int status = 0;
    run(runner(in, out, "--quiet"), status);
    REQUIRE(status == 0);
    std::ifstream f(out, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(f)), {});
    f.close();
    const size_t last = text.rfind('\n', text.size() - 2);
    REQUIRE(last != std::string::npos);
    text.resize(last + 1 + 10);  // the first 10 bytes of the last record
    std::ofstream(out, std::ios::binary | std::ios::trunc) << text;
    const std::string log = run(runner(in, out) + " 2>&1", status);
    CHECK(status == 0);
    CHECK(log.find("torn last line") != std::string::npos);
    CHECK(log.find("3 answered already, 1 to ask") != std::string::npos);
    check_answers(read_output(out), cases, 4);
}

TEST_CASE("pix2struct-run --shard i/n: the shards partition the records; together they answer each once") {
    const auto cases = reference_cases();
    TempDir dir;
    const int n = 12;
    const fs::path in = write_dataset(dir.path, cases, n);
    std::map<std::string, json> all;
    for (int i = 0; i < 3; ++i) {
        const fs::path out = dir.path / ("out." + std::to_string(i) + ".jsonl");
        int status = 0;
        run(runner(in, out, "--quiet --shard " + std::to_string(i) + "/3"), status);
        REQUIRE(status == 0);
        const auto part = read_output(out);
        CHECK(part.size() < size_t(n));  // a real split (the ids q0…q11 hash to all three shards)
        for (const auto& [id, r] : part) CHECK(all.emplace(id, r).second);
    }
    check_answers(all, cases, n);
    int status = 0;
    for (const char* bad : {"3/3", "1/0", "x", "1/2/3", "-1/2"}) {
        CAPTURE(bad);
        run(runner(in, dir.path / "bad.jsonl", std::string("--shard ") + quoted(bad) + " 2>/dev/null"), status);
        CHECK(status != 0);
    }
}

TEST_CASE("pix2struct-run --summary: exact match, relaxed accuracy and ANLS over the gold answers") {
    const auto cases = reference_cases();
    TempDir dir;
    // Golds chosen against the reference's answers, scored by hand:
    //  g0: the answer itself                           exact 1, relaxed 1, ANLS 1
    //  g1: the answer in the other case, and "x"       exact 0, relaxed 1 (case ignored), ANLS 1 (lower-cased)
    //  g2: the answer with its last character dropped  exact 0, relaxed 0, ANLS 1 - 1/len
    //  g3: no gold: not counted
    const std::string a0 = cases[0].text, a1 = cases[1].text, a2 = cases[2].text;
    REQUIRE(a2.size() >= 3);
    std::string other_case = a1;
    for (char& c : other_case) c = char(std::isupper(static_cast<unsigned char>(c)) ? std::tolower(c) : std::toupper(c));
    REQUIRE(other_case != a1);
    std::ofstream(dir.path / "in.jsonl")
        << json{{"id", "g0"}, {"image", cases[0].image}, {"question", cases[0].question}, {"answer", a0}}.dump() << "\n"
        << json{{"id", "g1"}, {"image", cases[1].image}, {"question", cases[1].question}, {"answer", {other_case, "x"}}}.dump() << "\n"
        << json{{"id", "g2"}, {"image", cases[2].image}, {"question", cases[2].question},
                {"answer", a2.substr(0, a2.size() - 1)}}.dump() << "\n"
        << json{{"id", "g3"}, {"image", cases[0].image}, {"question", cases[0].question}}.dump() << "\n";
    const fs::path summary = dir.path / "summary.json";
    int status = 0;
    const std::string log = run(runner(dir.path / "in.jsonl", dir.path / "out.jsonl", "--summary " + quoted(summary.string())) + " 2>&1", status);
    REQUIRE(status == 0);
    const json s = read_json(summary);
    CHECK(s["records"] == 4);
    CHECK(s["errors"] == 0);
    CHECK(s["with_gold"] == 3);
    CHECK(s["exact_match"].get<double>() == doctest::Approx(100.0 / 3));
    CHECK(s["relaxed_accuracy"].get<double>() == doctest::Approx(200.0 / 3));
    CHECK(s["anls"].get<double>() == doctest::Approx(100.0 * (2 + 1 - 1.0 / double(a2.size())) / 3));
    CHECK(log.find("exact match 33.33") != std::string::npos);
}

TEST_CASE("pix2struct-run refuses a repeated id, an output it did not write, and an output another run holds") {
    const auto cases = reference_cases();
    TempDir dir;
    int status = 0;
    const fs::path twice = write_dataset(dir.path, cases, 2, {R"({"id": "q1", "image": "x.png"})"});
    std::string log = run(runner(twice, dir.path / "out.jsonl") + " 2>&1", status);
    CHECK(status == 1);
    CHECK(log.find("id q1 is also the id on line 2") != std::string::npos);

    const fs::path in = write_dataset(dir.path, cases, 2), foreign = dir.path / "foreign.jsonl";
    std::ofstream(foreign) << "some notes\n";
    log = run(runner(in, foreign) + " 2>&1", status);
    CHECK(status == 1);
    CHECK(log.find("line 1 is not a record written by pix2struct-run") != std::string::npos);

    // a second runner on the same output: refused while another holds it (here, this test)
    const fs::path out = dir.path / "out.jsonl";
    const int fd = ::open(out.c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    log = run(runner(in, out) + " 2>&1", status);
    ::close(fd);
    CHECK(status == 1);
    CHECK(log.find("another pix2struct-run is writing it") != std::string::npos);
}
