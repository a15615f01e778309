// tests/programs.hpp — running the project's programs as a user runs them (test_cli, test_run): a shell
// command's output and exit status, single-quoting for the shell, the built programs' paths.
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/wait.h>

namespace p2s_test {

inline std::filesystem::path program(const std::string& name) { return std::filesystem::path(PIX2STRUCT_BUILD_DIR) / name; }

inline nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    REQUIRE(in);
    return nlohmann::json::parse(in);
}

// Single-quoted for the shell.
inline std::string quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out.append("'\\''");
        else out.push_back(c);
    }
    return out.append("'");
}

// Runs a shell command: its stdout, and its exit status in `status` (-1 when it did not exit by itself).
inline std::string run(const std::string& command, int& status) {
    FILE* p = popen(command.c_str(), "r");
    REQUIRE(p);
    std::string out;
    std::array<char, 4096> buf;
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
    const int w = pclose(p);
    status = WIFEXITED(w) ? WEXITSTATUS(w) : -1;
    return out;
}

}  // namespace p2s_test
