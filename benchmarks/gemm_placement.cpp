// Does it matter for a threaded GEMM where its operands were last written? fc1's forward product
// (x[128, 784] W[512, 784]^T, sft's gemm_packed) timed after five different preparations, called in
// rotation in one process so that all five see the same host:
//   evicted       a read pass over 32 MiB on the pool (both cores' L2s hold other data)
//   W by both     evicted, then W rewritten on the pool (half of it dirty in the other core's L2,
//                 as after an AdamW step at 2 threads)
//   W by main     evicted, then W rewritten by the calling thread only
//   W, x by both  evicted, then W and x rewritten on the pool
//   warm          nothing in between (the operands stay in the caches)
// Prints the 10th, 25th, 50th, 75th and 90th percentiles of the product's time. A diagnostic of
// thread scaling (benchmarks/RESULTS.md). Usage: gemm_placement [threads (default 2)]
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/gemm_packed.hpp>
#include <sft/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    const std::size_t threads = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2;
    sft::set_num_threads(threads);
    const std::size_t m = 128, n = 512, k = 784;
    std::vector<float> x(m * k, 0.5f), w(n * k, 0.25f), c(m * n), other(8u << 20, 1.0f);
    auto rewrite = [](std::vector<float>& v) {
        sft::detail::parallel_for(v.size(), 4096, [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) v[i] *= 1.0f;
        });
    };
    constexpr int modes = 5;
    const char* names[modes] = {"evicted", "W by both", "W by main", "W, x by both", "warm"};
    std::vector<double> t[modes];
    for (int it = 0; it < 2000; ++it) {
        const int mode = it % modes;
        if (mode != 4)
            sft::detail::parallel_for(other.size() / 16, 1024, [&](std::size_t b, std::size_t e) {
                float s = 0;
                for (std::size_t i = b; i < e; ++i) s += other[i * 16];
                if (s == 42.0f) other[0] = s;  // keeps the reads
            });
        if (mode == 1 || mode == 3) rewrite(w);
        if (mode == 2)
            for (float& v : w) v *= 1.0f;
        if (mode == 3) rewrite(x);
        const auto t0 = std::chrono::steady_clock::now();
        sft::kernels::gemm_packed<float>(false, true, m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, c.data(), n);
        if (it >= 10 * modes) t[mode].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("fc1 forward 128x512x784 at %zu threads, us: p10 p25 p50 p75 p90\n", threads);
    for (int i = 0; i < modes; ++i) {
        auto& v = t[i];
        std::sort(v.begin(), v.end());
        auto q = [&](double f) { return v[static_cast<std::size_t>(f * double(v.size() - 1))]; };
        std::printf("%-14s %6.0f %6.0f %6.0f %6.0f %6.0f\n", names[i], q(.1), q(.25), q(.5), q(.75), q(.9));
    }
}
