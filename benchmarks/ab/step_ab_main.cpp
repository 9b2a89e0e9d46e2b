// benchmarks/step_ab.sh's driver: the reference workload's training step from two source trees
// ("base", a git revision, and "work", the working tree) in one process, in alternating blocks of
// steps, so that both see the same host at the same moment. An epoch A/B (mlp_ab.sh) compares
// whole runs seconds apart, and this host's speed moves by 10-30% within seconds: it cannot
// resolve a change of 2-3% of the step. Here each block of `block` steps of one side is followed
// by one of the other; the first 2 steps of a block are not timed (the other side's thread pool
// may still be spinning). Prints each side's median time per step over its blocks and the median
// of the ratios of adjacent blocks (work / base; below 1: the working tree is faster).
// With threads given as "B:W" (e.g. 1:2) the base side runs on B threads and the work side on W:
// built from one tree twice, that measures the step's speed-up from B to
// W threads on the same host at the same moment, which epoch runs minutes apart cannot (the
// CMake target step_scaling, which compare.sh runs).
// Usage: step_ab [threads (2), or base:work] [blocks per side (200)] [steps per block (12)] [batch (128)] [data dir]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

void base_setup(int threads, std::size_t batch, const char* dir);
void work_setup(int threads, std::size_t batch, const char* dir);
double base_steps(int steps);
double work_steps(int steps);

int main(int argc, char** argv) {
    const std::string spec = argc > 1 ? argv[1] : "2";
    const std::size_t colon = spec.find(':');
    const int threads = std::atoi(spec.c_str());
    const int work_threads = colon == std::string::npos ? threads : std::atoi(spec.c_str() + colon + 1);
    const int blocks = argc > 2 ? std::atoi(argv[2]) : 200;
    const int block = argc > 3 ? std::atoi(argv[3]) : 12;
    const std::size_t batch = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 128;
    const char* dir = argc > 5 ? argv[5] : "/usr/share/datasets/fashion-mnist";
    if (threads < 1 || work_threads < 1 || blocks < 1 || block < 3 || batch < 1) {
        std::fprintf(stderr, "step_ab: need threads >= 1, blocks >= 1, steps per block >= 3, batch >= 1\n");
        return 2;
    }
    base_setup(threads, batch, dir);
    work_setup(work_threads, batch, dir);
    for (int i = 0; i < 5; ++i) base_steps(block), work_steps(block);  // warm-up: buffers, pools
    std::vector<double> t[2], ratios;
    double loss[2] = {0, 0};
    for (int b = 0; b < blocks; ++b) {
        double us[2];
        for (int side = 0; side < 2; ++side) {
            const int first = (b % 2) ^ side;  // the order alternates from block to block
            (first ? work_steps : base_steps)(2);
            const auto t0 = std::chrono::steady_clock::now();
            loss[first] += (first ? work_steps : base_steps)(block - 2);
            us[first] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / (block - 2);
        }
        t[0].push_back(us[0]);
        t[1].push_back(us[1]);
        ratios.push_back(us[1] / us[0]);
    }
    auto med = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    auto pct = [](std::vector<double> v, double q) {
        std::sort(v.begin(), v.end());
        return v[static_cast<std::size_t>(q * double(v.size() - 1))];
    };
    std::printf("threads %d (base) and %d (work), batch %zu, %d blocks of %d steps per side (%d timed)\n", threads, work_threads, batch, blocks, block, block - 2);
    std::printf("base: median %.1f us per step; work: median %.1f us per step (mean losses %.4f, %.4f)\n", med(t[0]), med(t[1]),
                loss[0] / blocks, loss[1] / blocks);
    std::printf("work/base per pair of blocks: median %.4f, quartiles %.4f - %.4f\n", med(ratios), pct(ratios, 0.25), pct(ratios, 0.75));
    if (work_threads != threads) {
        // Speed-up per pair of blocks: base time / work time, the inverse of each ratio.
        std::vector<double> speedups;
        for (double r : ratios) speedups.push_back(1 / r);
        std::printf("speed-up from %d to %d threads per pair of blocks: median %.3f, quartiles %.3f - %.3f\n", threads, work_threads,
                    med(speedups), pct(speedups, 0.25), pct(speedups, 0.75));
        std::printf("RESULT step_speedup=%.3f step_speedup_q1=%.3f step_speedup_q3=%.3f base_us=%.1f work_us=%.1f\n", med(speedups),
                    pct(speedups, 0.25), pct(speedups, 0.75), med(t[0]), med(t[1]));
        return 0;
    }
    std::printf("RESULT step_ab_ratio=%.4f base_us=%.1f work_us=%.1f\n", med(ratios), med(t[0]), med(t[1]));
}
