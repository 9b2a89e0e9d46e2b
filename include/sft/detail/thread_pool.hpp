/// @file thread_pool.hpp
/// sft's own persistent thread pool (no OpenMP): the kernels hand it a number of independent
/// tasks, the calling thread works on them too, and run() returns when all are done.
///
/// Determinism: the pool never decides what a task computes, only which thread runs it. Callers
/// cut their work into tasks from the problem size alone (never from the thread count) and reduce
/// partial results in task order (parallel_reduce below), so results are bit-identical whatever
/// set_num_threads() says. Internal: namespace sft::detail; the public knob is sft/parallel.hpp.
#pragma once

#include <sft/config.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sft::detail {

/// A short pause inside spin loops (lets the sibling hyper-thread run).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

/// The number of threads the hardware runs at once (at least 1).
inline std::size_t hardware_threads() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<std::size_t>(n);
}

/// Persistent workers plus the calling thread. Workers spin for a short while after a job (the
/// next kernel of a training step usually follows within microseconds), then sleep on a
/// condition variable, so an idle pool costs nothing.
class ThreadPool {
public:
    /// The process-wide pool, started with hardware_threads() threads on first use.
    static ThreadPool& instance() {
        static ThreadPool pool(hardware_threads());
        return pool;
    }

    explicit ThreadPool(std::size_t threads) { start(threads); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { stop(); }

    /// Threads that run tasks, the caller included (>= 1).
    std::size_t num_threads() const noexcept { return threads_.load(std::memory_order_relaxed); }

    /// Restarts the pool with `threads` threads (the caller included; 0 is taken as 1). Waits for
    /// a job running on another thread to finish first.
    void set_num_threads(std::size_t threads) {
        threads = std::max<std::size_t>(threads, 1);
        std::lock_guard<std::mutex> run_lock(run_mutex_);
        if (threads == num_threads()) return;
        stop();
        start(threads);
    }

    /// How long a worker spins for the next job before it sleeps.
    void set_spin_time(std::chrono::microseconds t) noexcept { spin_us_.store(t.count(), std::memory_order_relaxed); }

    /// Runs f(task) for every task in [0, tasks), each exactly once, spread over the pool's
    /// threads, and returns when all are done. f must not throw (kernels do not). Called from
    /// inside a task, or while another thread's job holds the pool, it runs the tasks in order on
    /// the calling thread instead: no deadlock, same results.
    template <class F>
    void run(std::size_t tasks, F&& f) {
        if (tasks == 0) return;
        std::unique_lock<std::mutex> run_lock(run_mutex_, std::defer_lock);
        if (tasks == 1 || num_threads() == 1 || in_task() || !run_lock.try_lock()) {
            for (std::size_t t = 0; t < tasks; ++t) f(t);
            return;
        }
        using Fn = std::remove_reference_t<F>;
        Job job;
        job.ctx = const_cast<void*>(static_cast<const void*>(&f));
        job.invoke = [](void* ctx, std::size_t t) { (*static_cast<Fn*>(ctx))(t); };
        job.tasks = tasks;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &job;
            generation_.fetch_add(1, std::memory_order_release);
        }
        if (sleeping_.load(std::memory_order_acquire) > 0) wake_.notify_all();
        work_on(job);
        // Every task is done once `done` reaches `tasks`; then close the job so that no late worker
        // joins it, and wait for the workers still inside it to leave (they find no task left).
        // Spin briefly, then yield: on a machine with more runnable threads than cores the task
        // being waited for may belong to a thread that needs this core to finish it.
        for (unsigned i = 0; job.done.load(std::memory_order_acquire) != tasks; ++i) {
            if (i < 4096) cpu_relax();
            else std::this_thread::yield();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = nullptr;
        }
        while (job.inside.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    }

    /// True on a thread that is running a task of this process' pool.
    static bool in_task() noexcept { return task_depth() > 0; }

    /// In a task: which of the job's threads runs it, from 0 (the thread that called run()) to
    /// num_threads() - 1, so that a job can give each thread a buffer of its own (e.g. a GEMM
    /// packing an operand once per thread). 0 outside tasks.
    static std::size_t thread_slot() noexcept { return in_task() ? slot_ref() : 0; }

private:
    struct Job {
        void* ctx = nullptr;
        void (*invoke)(void*, std::size_t) = nullptr;
        std::size_t tasks = 0;
        std::atomic<std::size_t> next{0};    // the next task to hand out
        std::atomic<std::size_t> done{0};    // tasks finished
        std::atomic<std::size_t> inside{0};  // workers that joined and have not left
    };

    static std::size_t& slot_ref() noexcept {
        static thread_local std::size_t slot = 0;  // workers: 1..num_threads() - 1
        return slot;
    }

    static int& task_depth() noexcept {
        static thread_local int depth = 0;
        return depth;
    }

    static void work_on(Job& job) noexcept {
        ++task_depth();
        for (;;) {
            const std::size_t t = job.next.fetch_add(1, std::memory_order_relaxed);
            if (t >= job.tasks) break;
            job.invoke(job.ctx, t);
            job.done.fetch_add(1, std::memory_order_acq_rel);
        }
        --task_depth();
    }

    void start(std::size_t threads) {
        stopping_ = false;
        threads_.store(threads, std::memory_order_relaxed);
        workers_.reserve(threads - 1);
        // The generation is read here, not in the new thread: a stop() posted before the thread
        // first runs must still be seen as new.
        const std::size_t seen = generation_.load(std::memory_order_acquire);
        for (std::size_t i = 0; i + 1 < threads; ++i)
            workers_.emplace_back([this, seen, i] {
                slot_ref() = i + 1;
                worker_loop(seen);
            });
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
        threads_.store(1, std::memory_order_relaxed);
    }

    void worker_loop(std::size_t seen) noexcept {
        for (;;) {
            // Spin a little for the next job, then sleep until one is posted.
            const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_.load(std::memory_order_relaxed));
            for (unsigned i = 1; generation_.load(std::memory_order_acquire) == seen; ++i) {
                if (i < 1024) cpu_relax();
                else std::this_thread::yield();  // let a descheduled thread of this process have the core
                if ((i & 63) == 0 && std::chrono::steady_clock::now() >= spin_until) break;
            }
            Job* job = nullptr;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                if (generation_.load(std::memory_order_relaxed) == seen) {
                    sleeping_.fetch_add(1, std::memory_order_acq_rel);
                    wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
                    sleeping_.fetch_sub(1, std::memory_order_acq_rel);
                }
                seen = generation_.load(std::memory_order_relaxed);
                if (stopping_) return;
                job = job_;
                // Joining under the lock: run() closes the job under the same lock, so a worker
                // either joins while the job is open or never sees it.
                if (job) job->inside.fetch_add(1, std::memory_order_acq_rel);
            }
            if (job) {
                work_on(*job);
                job->inside.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
    }

    std::mutex run_mutex_;  // one job at a time; held by run() and set_num_threads()
    std::mutex mutex_;      // guards job_ and stopping_
    std::condition_variable wake_;
    std::atomic<std::size_t> generation_{0};
    std::atomic<int> sleeping_{0};
    std::atomic<long long> spin_us_{200};
    std::atomic<std::size_t> threads_{1};
    Job* job_ = nullptr;
    bool stopping_ = false;
    std::vector<std::thread> workers_;
};

/// The fixed cut of [0, n) into chunks of at least `grain` items and at most `max_chunks` chunks:
/// depends on n, grain and max_chunks only, never on the thread count.
struct Chunking {
    std::size_t chunks = 0;  ///< number of chunks (0 when n == 0)
    std::size_t size = 0;    ///< items per chunk; the last one may be shorter

    Chunking(std::size_t n, std::size_t grain, std::size_t max_chunks) noexcept {
        if (n == 0) return;
        grain = std::max<std::size_t>(grain, 1);
        max_chunks = std::max<std::size_t>(max_chunks, 1);
        size = std::max(grain, (n + max_chunks - 1) / max_chunks);
        chunks = (n + size - 1) / size;
    }
    std::size_t begin(std::size_t c) const noexcept { return c * size; }
    std::size_t end(std::size_t c, std::size_t n) const noexcept { return std::min(n, (c + 1) * size); }
};

/// f(begin, end) over a cut of [0, n) into ranges of at least `grain` items, on the pool. For
/// work whose every item is computed independently (elementwise kernels).
template <class F>
void parallel_for(std::size_t n, std::size_t grain, F&& f) {
    if (n == 0) return;
    ThreadPool& pool = ThreadPool::instance();
    // A few chunks per thread even out threads slowed by other processes.
    const Chunking cut(n, grain, 4 * pool.num_threads());
    pool.run(cut.chunks, [&](std::size_t c) { f(cut.begin(c), cut.end(c, n)); });
}

/// The most partial results parallel_reduce keeps (on the stack: no allocation).
inline constexpr std::size_t max_reduce_chunks = 64;

/// Deterministic reduction: cuts [0, n) into at most max_reduce_chunks ranges of at least `grain`
/// items (a cut that depends on n and grain only), computes map(begin, end) -> R for each range
/// on the pool, then folds the partials in range order with combine(R, R) -> R starting from init.
/// The result is bit-identical for every thread count.
template <class R, class Map, class Combine>
R parallel_reduce(std::size_t n, std::size_t grain, R init, Map&& map, Combine&& combine) {
    const Chunking cut(n, grain, max_reduce_chunks);
    R partial[max_reduce_chunks] = {};
    ThreadPool::instance().run(cut.chunks, [&](std::size_t c) { partial[c] = map(cut.begin(c), cut.end(c, n)); });
    for (std::size_t c = 0; c < cut.chunks; ++c) init = combine(init, partial[c]);
    return init;
}

}  // namespace sft::detail
