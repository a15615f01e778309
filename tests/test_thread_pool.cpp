// The CPU backend's thread pool when the system refuses threads (`--threads 1000` on a machine that will
// not start them): an Error saying how many started, with those joined, never a hang.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "pix2struct/backend/thread_pool.hpp"

TEST_CASE("ThreadPool: threads the system refuses are an Error, with the started ones joined") {
    // In a child process whose user may run only a few tasks (RLIMIT_NPROC; root becomes nobody first, as
    // root is not held to it). The child reports through its exit status; a hang ends it by SIGALRM.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::alarm(60);
        if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
        const rlimit few{4, 4};
        if (::setrlimit(RLIMIT_NPROC, &few) != 0) ::_exit(4);
        try {
            pix2struct::detail::ThreadPool pool(1000);
            ::_exit(1);  // all 1000 started: the limit did not hold
        } catch (const pix2struct::Error& e) {
            ::_exit(std::string(e.what()).find("cannot start 1000 threads") != std::string::npos ? 0 : 2);
        } catch (...) {
            ::_exit(5);
        }
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE_MESSAGE(WIFEXITED(status), "the child hung or crashed (signal ", WIFSIGNALED(status) ? WTERMSIG(status) : 0, ")");
    CHECK(WEXITSTATUS(status) == 0);
}
