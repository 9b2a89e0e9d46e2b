// How much faster this machine's cores run GEMM work two at a time than one at a time, with
// nothing shared between them: the ceiling of any 2-thread speed-up measured in the same minutes.
// Windows of `window` seconds alternate: one thread computing the reference MLP's fc1 forward
// product (128x512x784, sft's GEMM at 1 thread) over and over, then two threads each doing the
// same on its own operands and output. A pair's ratio is the two threads' products per second
// over the one thread's. On this shared host the ratio moves between about 1.5 and 2.2 within
// minutes (benchmarks/RESULTS.md), so compare.sh runs this between the epochs it times.
// Usage: core_scaling [pairs (4)] [window seconds (0.25)]
#include <sft/kernels/gemm.hpp>
#include <sft/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {
using Clock = std::chrono::steady_clock;

struct Operands {
    static constexpr std::size_t m = 128, n = 512, k = 784;
    std::vector<float> x = std::vector<float>(m * k), w = std::vector<float>(n * k), y = std::vector<float>(m * n);
    explicit Operands(unsigned seed) {
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7 + seed) % 13) * 0.05f - 0.3f;
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = float((i * 5 + seed) % 11) * 0.02f - 0.1f;
    }
    void product() { sft::kernels::gemm<float>(false, true, m, n, k, 1.f, x.data(), k, w.data(), k, 0.f, y.data(), n); }
};

/// Products per second of one thread working on `ops` for `seconds`.
double rate(Operands& ops, double seconds) {
    const auto t0 = Clock::now();
    std::size_t count = 0;
    double elapsed = 0;
    do {
        ops.product();
        ++count;
        elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (elapsed < seconds);
    return double(count) / elapsed;
}
}  // namespace

int main(int argc, char** argv) {
    const int pairs = argc > 1 ? std::atoi(argv[1]) : 4;
    const double window = argc > 2 ? std::atof(argv[2]) : 0.25;
    if (pairs < 1 || !(window > 0)) {
        std::fprintf(stderr, "usage: core_scaling [pairs >= 1] [window seconds > 0]\n");
        return 2;
    }
    sft::set_num_threads(1);  // every product on its calling thread; the pool stays idle
    Operands a(1), b(2);
    rate(a, 0.05);  // warm-up: packing buffers, caches
    std::vector<double> ratios;
    for (int p = 0; p < pairs; ++p) {
        const double one = rate(a, window);
        double second = 0;
        std::thread other([&] { second = rate(b, window); });
        const double first = rate(a, window);
        other.join();
        ratios.push_back((first + second) / one);
        std::printf("pair %d: 1 thread %.0f products/s, 2 threads %.0f + %.0f: %.2fx\n", p + 1, one, first, second, ratios.back());
    }
    std::sort(ratios.begin(), ratios.end());
    const std::size_t h = ratios.size() / 2;
    const double median = ratios.size() % 2 ? ratios[h] : 0.5 * (ratios[h - 1] + ratios[h]);
    std::printf("RESULT core_scaling=%.3f min=%.3f max=%.3f pairs=%d window_s=%g\n", median, ratios.front(), ratios.back(),
                pairs, window);
}
