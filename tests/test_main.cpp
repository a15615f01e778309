// The doctest runner shared by every test executable. A run in which a test case was skipped (its data
// absent: doctest::skip; no CUDA device: SKIP_WITHOUT_GPU) and none failed exits with 77, which CTest (SKIP_RETURN_CODE) and meson report as
// skipped rather than passed; .ci/run fails when a CPU test is skipped.
// It is also the test programs' one implementation file of the library (PIX2STRUCT_IMPLEMENTATION).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/pix2struct.hpp"

#include <cstdio>

namespace {

int g_skipped = 0;
int g_without_device = 0;

// Counts the test cases marked skip (not those left out by a -tc filter).
struct SkipCounter : doctest::IReporter {
    explicit SkipCounter(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData&) override {}
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData& tc) override { g_skipped += tc.m_skip ? 1 : 0; }
};
REGISTER_LISTENER("skip_counter", 1, SkipCounter);

}  // namespace

// Called by the GPU tests' SKIP_WITHOUT_GPU (tests/gpu/gpu_test.cuh) for each case it skips.
namespace p2s_test {
void note_skipped_without_device() { ++g_without_device; }
}  // namespace p2s_test

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int failed = context.run();
    if (context.shouldExit() || failed) return failed;
    if (g_skipped > 0 || g_without_device > 0) {
        std::printf("SKIPPED: %d test case(s) without their data, %d without a CUDA device\n", g_skipped,
                    g_without_device);
        return 77;
    }
    return 0;
}
