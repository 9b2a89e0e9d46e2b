// benchmarks/gemm_ab.sh's driver: the same products from two source trees ("base", a git revision,
// and "work", the working tree), called alternately in one process, so that both see the same
// host at the same moment (this shared host's speed moves by up to 1.5x between runs a minute
// apart; only ratios measured side by side mean something). Per shape: the median and 10th
// percentile GFLOP/s of each side and the ratio of their times (work / base; < 1: work faster).
// The shapes are the reference MLP's (batch 128 and 32) and an odd one with edge tiles. C
// alternates between two buffers per side, so it is not in L2 when a product starts, as in a
// training step; with a fourth argument "warm", each side keeps one C (in L2, as in gemm_bench);
// with "cold", A and B also rotate over 8 copies (16 MB and more), so that they come from L3 as
// a layer's weights do in a training step (AdamW's pass over all parameters evicts them from L2;
// the environment variable AB_COPIES sets another number of copies).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using Gemm = void(bool, bool, std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*, std::size_t, float, float*,
                  std::size_t);
Gemm base_gemm, work_gemm;
void base_set_threads(int);
void work_set_threads(int);

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    const int calls = argc > 2 ? std::atoi(argv[2]) : 300;
    const std::string mode = argc > 3 ? argv[3] : "";
    const bool warm = mode == "warm", cold = mode == "cold";
    if (argc > 3 && !warm && !cold) {
        std::fprintf(stderr, "gemm_ab: unknown mode '%s' (warm or cold)\n", argv[3]);
        return 2;
    }
    const std::size_t copies = cold ? (std::getenv("AB_COPIES") ? std::strtoul(std::getenv("AB_COPIES"), nullptr, 10) : 8) : 1, stride = std::size_t(1) << 20;
    base_set_threads(threads);
    work_set_threads(threads);
    struct Shape {
        const char* name;
        bool ta, tb;
        std::size_t m, n, k;
        float beta;
    };
    const Shape shapes[] = {{"fc1 fwd", false, true, 128, 512, 784, 0.f},  {"fc1 dx", false, false, 128, 784, 512, 0.f},
                            {"fc1 dw", true, false, 512, 784, 128, 1.f},   {"fc2 fwd", false, true, 128, 256, 512, 0.f},
                            {"fc2 dx", false, false, 128, 512, 256, 0.f},  {"fc2 dw", true, false, 256, 512, 128, 1.f},
                            {"b32 fwd", false, true, 32, 512, 784, 0.f},   {"b32 dx", false, false, 32, 784, 512, 0.f},
                            {"b32 dw", true, false, 512, 784, 32, 1.f},    {"odd 100x200x75", false, false, 100, 200, 75, 0.f}};
    // Operands 64-byte aligned, as sft's tensors are (tensor_alignment): where threads' blocks
    // of C meet inside a cache line depends on it.
    auto aligned = [](std::vector<float>& v) {
        void* p = v.data();
        std::size_t space = v.size() * sizeof(float);
        return static_cast<float*>(std::align(64, sizeof(float), p, space));
    };
    std::vector<float> a_mem(copies * stride + 16), b_mem(copies * stride + 16), c_mem[4];
    float* a = aligned(a_mem);
    float* b = aligned(b_mem);
    float* c[4];
    for (int i = 0; i < 4; ++i) c_mem[i].resize(stride + 16), c[i] = aligned(c_mem[i]);
    for (std::size_t i = 0; i < copies * stride; ++i) a[i] = float(i % 7) * 0.1f, b[i] = float(i % 5) * 0.2f;
    std::printf("threads %d, %d calls per side and shape, C %s\n", threads, calls, warm ? "warm (one buffer per side)" : "cold (two buffers per side)");
    if (cold) std::printf("A and B cold: rotated over %zu copies\n", copies);
    std::printf("%-16s %22s %22s %16s\n", "shape", "base GFLOP/s med p10", "work GFLOP/s med p10", "work/base time");
    for (const Shape& s : shapes) {
        const std::size_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
        std::vector<double> t[2];
        // Each side has its own thread pool, whose worker spins for 200 us after a job: at 2
        // threads the sides take turns in blocks of 6 calls and the first 2 of a block are not
        // recorded, so that the other side's spinning worker does not compete for a core.
        const int block = threads > 1 ? 6 : 1, skip = threads > 1 ? 2 : 0;
        for (int it = 0, recorded = 0; recorded < 2 * calls; ++it) {
            const int side = (it / block) % 2;
            const auto t0 = std::chrono::steady_clock::now();
            const std::size_t op = (std::size_t(it) % copies) * stride;
            (side ? work_gemm : base_gemm)(s.ta, s.tb, s.m, s.n, s.k, a + op, lda, b + op, ldb, s.beta, c[2 * side + (warm ? 0 : it % 2)], s.n);
            const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
            if (it >= 20 * block && it % block >= skip && t[side].size() < std::size_t(calls)) {  // after 10 warm-up blocks per side
                t[side].push_back(us);
                ++recorded;
            }
        }
        for (auto& v : t) std::sort(v.begin(), v.end());
        const double mflop = 2.0 * double(s.m) * double(s.n) * double(s.k) / 1e3;
        auto med = [](const std::vector<double>& v) { return v[v.size() / 2]; };
        auto p10 = [](const std::vector<double>& v) { return v[v.size() / 10]; };
        std::printf("%-16s %11.1f %10.1f %11.1f %10.1f %16.3f\n", s.name, mflop / med(t[0]), mflop / p10(t[0]), mflop / med(t[1]), mflop / p10(t[1]),
                    med(t[1]) / med(t[0]));
    }
}
