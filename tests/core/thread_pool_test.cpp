#include <sft/detail/thread_pool.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {
/// Restores the default thread count when a test ends, whatever it set.
struct ThreadCountGuard {
    ~ThreadCountGuard() { sft::set_num_threads(sft::detail::hardware_threads()); }
};
}  // namespace

TEST_CASE("thread pool: set_num_threads/get_num_threads, default is the hardware's, 0 is rejected", "[core][thread_pool]") {
    ThreadCountGuard guard;
    CHECK(sft::get_num_threads() == sft::detail::hardware_threads());
    for (std::size_t n : {1, 2, 3, 7}) {
        sft::set_num_threads(n);
        CHECK(sft::get_num_threads() == n);
    }
    CHECK_THROWS_WITH(sft::set_num_threads(0), Catch::Contains("set_num_threads(0)"));
    CHECK(sft::get_num_threads() == 7);  // unchanged by the rejected call
}

TEST_CASE("thread pool: every task runs exactly once, for any number of tasks and threads", "[core][thread_pool]") {
    ThreadCountGuard guard;
    for (std::size_t threads : {1, 2, 3, 5}) {
        sft::set_num_threads(threads);
        for (std::size_t tasks : {0, 1, 2, 3, 17, 1000}) {
            INFO("threads " << threads << " tasks " << tasks);
            std::vector<std::atomic<int>> hits(tasks);
            for (int repeat = 0; repeat < 20; ++repeat)  // back-to-back jobs: no task may leak into the next
                sft::detail::ThreadPool::instance().run(tasks, [&](std::size_t t) { hits[t].fetch_add(1); });
            for (std::size_t t = 0; t < tasks; ++t) REQUIRE(hits[t].load() == 20);
        }
    }
}

TEST_CASE("thread pool: tasks do run on several threads at once", "[core][thread_pool]") {
    ThreadCountGuard guard;
    sft::set_num_threads(2);
    // Each of the two tasks waits until both have started: with one thread this could only end by
    // the timeout, so `met` proves two threads ran tasks concurrently.
    std::atomic<int> started{0};
    std::atomic<int> met{0};
    std::mutex ids_mutex;
    std::set<std::thread::id> ids;
    sft::detail::ThreadPool::instance().run(2, [&](std::size_t) {
        {
            std::lock_guard<std::mutex> lock(ids_mutex);
            ids.insert(std::this_thread::get_id());
        }
        started.fetch_add(1);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (started.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
        if (started.load() == 2) met.fetch_add(1);
    });
    CHECK(met.load() == 2);
    CHECK(ids.size() == 2);
}

TEST_CASE("thread pool: thread_slot gives each thread of a job its own index below num_threads", "[core][thread_pool]") {
    ThreadCountGuard guard;
    using Pool = sft::detail::ThreadPool;
    CHECK(Pool::thread_slot() == 0);  // outside tasks
    for (std::size_t threads : {1, 2, 3, 4}) {
        sft::set_num_threads(threads);
        INFO("threads " << threads);
        for (int repeat = 0; repeat < 50; ++repeat) {
            std::mutex m;
            std::vector<std::thread::id> owner(threads);  // the one thread seen with each slot in this job
            bool ok = true;
            Pool::instance().run(64, [&](std::size_t) {
                const std::size_t slot = Pool::thread_slot();
                std::lock_guard<std::mutex> lock(m);
                if (slot >= threads) {
                    ok = false;
                    return;
                }
                if (owner[slot] == std::thread::id()) owner[slot] = std::this_thread::get_id();
                else if (owner[slot] != std::this_thread::get_id()) ok = false;  // two threads with one slot
                std::this_thread::yield();
            });
            REQUIRE(ok);
            CHECK((owner[0] == std::thread::id() || owner[0] == std::this_thread::get_id()));  // slot 0: the caller
        }
    }
    CHECK(Pool::thread_slot() == 0);
}

TEST_CASE("thread pool: a run inside a task runs inline, without deadlock", "[core][thread_pool]") {
    ThreadCountGuard guard;
    sft::set_num_threads(3);
    std::vector<std::atomic<int>> hits(8 * 8);
    std::atomic<int> outside_task{0};  // Catch2 assertions are not thread-safe: count, check after
    sft::detail::ThreadPool::instance().run(8, [&](std::size_t outer) {
        if (!sft::detail::ThreadPool::in_task()) outside_task.fetch_add(1);
        sft::detail::ThreadPool::instance().run(8, [&](std::size_t inner) { hits[outer * 8 + inner].fetch_add(1); });
    });
    CHECK(outside_task.load() == 0);
    for (auto& h : hits) REQUIRE(h.load() == 1);
    CHECK_FALSE(sft::detail::ThreadPool::in_task());
}

TEST_CASE("thread pool: concurrent callers from several threads all complete", "[core][thread_pool]") {
    ThreadCountGuard guard;
    sft::set_num_threads(2);
    constexpr std::size_t callers = 4, tasks = 257;
    std::vector<std::vector<int>> out(callers, std::vector<int>(tasks, 0));
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < callers; ++c)
        threads.emplace_back([&, c] {
            for (int repeat = 0; repeat < 50; ++repeat)
                sft::detail::parallel_for(tasks, 1, [&](std::size_t b, std::size_t e) {
                    for (std::size_t i = b; i < e; ++i) out[c][i] += int(i);
                });
        });
    for (auto& t : threads) t.join();
    for (std::size_t c = 0; c < callers; ++c)
        for (std::size_t i = 0; i < tasks; ++i) REQUIRE(out[c][i] == 50 * int(i));
}

TEST_CASE("thread pool: the chunking depends on n and grain only", "[core][thread_pool]") {
    const sft::detail::Chunking none(0, 10, 64);
    CHECK(none.chunks == 0);
    const sft::detail::Chunking small(5, 10, 64);  // fewer items than a grain: one chunk
    CHECK(small.chunks == 1);
    CHECK(small.end(0, 5) == 5);
    for (std::size_t n : {1, 63, 64, 65, 1000, 100003}) {
        const sft::detail::Chunking cut(n, 7, 64);
        INFO("n " << n);
        CHECK(cut.chunks <= 64);
        CHECK(cut.size >= 7);
        std::size_t covered = 0;
        for (std::size_t c = 0; c < cut.chunks; ++c) {
            REQUIRE(cut.begin(c) == covered);
            REQUIRE(cut.end(c, n) > cut.begin(c));
            covered = cut.end(c, n);
        }
        CHECK(covered == n);
    }
}

TEST_CASE("thread pool: parallel_reduce is bit-identical for every thread count and folds in range order", "[core][thread_pool]") {
    ThreadCountGuard guard;
    // Terms of wildly different magnitudes: any change of summation order changes the float sum.
    const std::size_t n = 100003;
    std::vector<float> x(n);
    std::uint64_t s = 12345;
    for (auto& v : x) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        v = std::ldexp(float((s >> 40) & 0xffff) - 32768.0f, int((s >> 20) % 40) - 20);
    }
    auto sum_range = [&](std::size_t b, std::size_t e) {
        float acc = 0;
        for (std::size_t i = b; i < e; ++i) acc += x[i];
        return acc;
    };
    auto add = [](float a, float b) { return a + b; };
    // The fold by hand, in range order, over the documented cut.
    const sft::detail::Chunking cut(n, 1000, sft::detail::max_reduce_chunks);
    float want = 0;
    for (std::size_t c = 0; c < cut.chunks; ++c) want += sum_range(cut.begin(c), cut.end(c, n));
    float plain = 0;
    for (float v : x) plain += v;
    INFO("the plain left-to-right sum differs, so the test can tell orders apart: " << plain << " vs " << want);
    CHECK(plain != want);
    for (std::size_t threads : {1, 2, 3, 4, 7}) {
        sft::set_num_threads(threads);
        for (int repeat = 0; repeat < 5; ++repeat) {
            const float got = sft::detail::parallel_reduce(n, 1000, 0.0f, sum_range, add);
            INFO("threads " << threads);
            REQUIRE(got == want);  // bit-identical
        }
    }
}

TEST_CASE("thread pool: parallel_for covers 0..n-1 exactly once with ranges of at least the grain", "[core][thread_pool]") {
    ThreadCountGuard guard;
    for (std::size_t threads : {1, 2, 4}) {
        sft::set_num_threads(threads);
        for (std::size_t n : {0, 1, 5, 4096, 10007}) {
            std::vector<int> hits(n, 0);
            std::atomic<bool> short_range{false};
            sft::detail::parallel_for(n, 64, [&](std::size_t b, std::size_t e) {
                if (e - b < 64 && e != n) short_range = true;
                for (std::size_t i = b; i < e; ++i) ++hits[i];
            });
            INFO("threads " << threads << " n " << n);
            CHECK_FALSE(short_range.load());
            for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i] == 1);
        }
    }
}
