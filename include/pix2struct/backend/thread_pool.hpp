// pix2struct/backend/thread_pool.hpp — the CPU backend's fixed pool of threads (detail::ThreadPool).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "pix2struct/error.hpp"

namespace pix2struct::detail {

// A fixed pool: parallel_for(n, f) runs f(i, worker) for i in [0, n) on the calling thread (worker 0) and
// the pool's threads (workers 1..size-1) and returns when all are done. Between calls workers spin for about
// 0.1 ms (a decode step makes a hundred calls a few tens of µs apart, and a wake-up through the kernel cost
// 12% of a step), then sleep. One pool per backend; not reentrant.
class ThreadPool {
public:
    explicit ThreadPool(int threads) {
        try {
            for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this, i] { work(i); });
        } catch (const std::system_error& e) {  // the system refused a thread: join those started, then say so
            const size_t started = workers_.size() + 1;
            shutdown();
            detail::fail("cannot start ", threads, " threads (", started, " started): ", e.what());
        }
    }
    ~ThreadPool() { shutdown(); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    template <class F>
    void parallel_for(int64_t n, F&& f) {
        if (n <= 0) return;
        if (workers_.empty() || n == 1) {
            for (int64_t i = 0; i < n; ++i) f(i, 0);
            return;
        }
        // The task is called through a plain function pointer and f's address (f outlives the call): no
        // std::function, whose captures would be heap-allocated on every call (every linear of every step).
        using Fn = std::remove_reference_t<F>;
        {
            std::lock_guard lock(mutex_);
            task_ = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
            call_ = [](void* task, int64_t i, int worker) { (*static_cast<Fn*>(task))(i, worker); };
            count_ = n;
            next_.store(0);
            pending_.store(int(workers_.size()));
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        run_tasks(0);
        for (int i = 0; i < kSpins && pending_.load() != 0; ++i) pause();
        std::unique_lock lock(mutex_);
        done_.wait(lock, [this] { return pending_.load() == 0; });
        task_ = nullptr;
    }

private:
    static constexpr int kSpins = 2000;
    static void pause() {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }

    void shutdown() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    void run_tasks(int worker) {
        for (int64_t i; (i = next_.fetch_add(1)) < count_;) call_(task_, i, worker);
    }
    void work(int worker) {
        uint64_t seen = 0;
        for (;;) {
            for (int i = 0; i < kSpins && generation_.load() == seen; ++i) pause();
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
                seen = generation_.load();
                if (stop_) return;
            }
            run_tasks(worker);
            if (pending_.fetch_sub(1) == 1) {
                std::lock_guard lock(mutex_);  // the caller checks pending_ under the lock before it sleeps
                done_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    void* task_ = nullptr;                          // the caller's f
    void (*call_)(void*, int64_t, int) = nullptr;  // calls it
    std::atomic<int64_t> next_{0};
    int64_t count_ = 0;
    std::atomic<int> pending_{0};
    std::atomic<uint64_t> generation_{0};
    bool stop_ = false;
};

}  // namespace pix2struct::detail
