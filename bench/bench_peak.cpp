// bench_peak — what this CPU's arithmetic units can do: bench/peak.hpp's register-only loop per instruction,
// on 1 thread and on every thread at once. An instruction the CPU lacks is reported as such. These are the
// ceilings the kernels of bench_e2e and the int8/fp16 work are measured against.
//
//   bench_peak [--threads N] [--json]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "peak.hpp"
#include "pix2struct/version.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Peak rate of this CPU's arithmetic instructions (register-only loops)."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    bool json = false;
    app.add_option("--threads", threads, "Threads for the all-threads figure")->capture_default_str();
    app.add_flag("--json", json, "Print one JSON object");
    CLI11_PARSE(app, argc, argv);

    nlohmann::json out = nlohmann::json::object();
    out["threads"] = threads;
    if (!json) std::printf("%-42s %12s %14s\n", "instruction", "1 thread", (std::to_string(threads) + " threads").c_str());
    for (const peak::Loop& loop : peak::loops()) {
        if (!loop.available) {
            if (!json) std::printf("%-42s %27s\n", loop.name.c_str(), "not on this CPU");
            out[loop.name] = nullptr;
            continue;
        }
        const double one = peak::rate(loop, 1), all = peak::rate(loop, threads);
        if (!json) std::printf("%-42s %8.1f %-7s %6.1f %s\n", loop.name.c_str(), one, loop.unit.c_str(), all, loop.unit.c_str());
        out[loop.name] = {{"one_thread", one}, {"all_threads", all}, {"unit", loop.unit}};
    }
    if (json) std::cout << out.dump() << "\n";
    return 0;
}
