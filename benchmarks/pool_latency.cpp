// How long sft's pool takes to start a job's second task, by the serial gap before the job: two
// tasks that each spin 100 us; the later of their start times after run() is called, and the whole
// job's time. Workers spin 200 us for the next job, then sleep (detail/thread_pool.hpp): a gap past
// that costs a wake-up. A diagnostic of thread scaling (benchmarks/RESULTS.md).
// Usage: pool_latency [gap_us ...]   (default: 5 50 150 300)
#include <sft/detail/thread_pool.hpp>
#include <sft/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {
using Clock = std::chrono::steady_clock;
double since_us(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }
void spin_us(double us) {
    const auto t0 = Clock::now();
    while (since_us(t0) < us) {
    }
}
double quantile(std::vector<double>& v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * double(v.size() - 1))];
}
}  // namespace

int main(int argc, char** argv) {
    sft::set_num_threads(2);
    auto& pool = sft::detail::ThreadPool::instance();
    std::vector<double> gaps;
    for (int i = 1; i < argc; ++i) gaps.push_back(std::atof(argv[i]));
    if (gaps.empty()) gaps = {5, 50, 150, 300};
    for (const double gap : gaps) {
        std::vector<double> second_start, total;
        for (int it = 0; it < 2000; ++it) {
            spin_us(gap);
            const auto t0 = Clock::now();
            double start[2] = {0, 0};
            pool.run(2, [&](std::size_t t) {
                start[t] = since_us(t0);
                spin_us(100);
            });
            if (it >= 50) second_start.push_back(std::max(start[0], start[1])), total.push_back(since_us(t0));
        }
        std::printf("gap %5.0f us: second task starts after p10 %.1f p50 %.1f p90 %.1f p99 %.1f us; job of 2 x 100 us: p50 %.1f p90 %.1f us\n", gap,
                    quantile(second_start, .1), quantile(second_start, .5), quantile(second_start, .9), quantile(second_start, .99),
                    quantile(total, .5), quantile(total, .9));
    }
}
