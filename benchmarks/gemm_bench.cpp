// GEMM throughput on the reference workload's shapes (MLP 784-512-256-10, batch 128), for sft's
// packed kernel (kernels::gemm_packed), Eigen 3.4 (kernels::gemm_eigen, the tests' reference) and, when the
// benchmark was built with it, OpenBLAS through cblas; with the machine's own limits measured by
// the same binary: an FMA peak loop (independent FMA chains, no memory) and a STREAM-style triad.
// Every product of a linear layer y = x W^T appears as the layer runs it, row-major:
//   fwd  C[batch, out] = x[batch, in] W[out, in]^T   (trans_b)
//   dx   C[batch, in]  = g[batch, out] W[out, in]     (plain)
//   dw   C[out, in]   += g[batch, out]^T x[batch, in] (trans_a, beta 1)
//   fwd_bias_relu  C = relu(x W^T + b): sft_fused is kernels::gemm_bias_act (bias and ReLU applied
//        to each micro-tile in registers), the others run the product, then a bias + ReLU pass.
// The last argument of each benchmark is the number of threads.
// Run: build/benchmarks/gemm_bench --benchmark_min_time=0.5 (see benchmarks/RESULTS.md)
#include <sft/kernels/gemm.hpp>
#include <sft/kernels/gemm_packed.hpp>
#include <sft/kernels/simd.hpp>
#include <sft/parallel.hpp>
#include <sft/tensor.hpp>

#include <benchmark/benchmark.h>

#if SFT_BENCH_OPENBLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <cstddef>
#include <new>
#include <string>
#include <vector>

namespace {

enum class Impl { sft, sft_fused, eigen, openblas };
enum class Op { fwd, dx, dw, fwd_bias_relu };

struct Shape {
    const char* layer;
    std::size_t batch, in, out;
};
const Shape shapes[] = {{"fc1", 128, 784, 512}, {"fc2", 128, 512, 256}, {"fc3", 128, 256, 10}, {"fc1_b32", 32, 784, 512}, {"fc2_b32", 32, 512, 256}};

// Operands on 64-byte boundaries, as sft's tensors are (std::vector's default allocator only
// promises 16 bytes), so that every implementation sees the alignment it gets in training.
template <class T>
struct Aligned64 {
    using value_type = T;
    Aligned64() = default;
    template <class U>
    Aligned64(const Aligned64<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const Aligned64<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const Aligned64<U>&) const noexcept { return false; }
};
using AlignedVector = std::vector<float, Aligned64<float>>;

AlignedVector random_vector(std::size_t n, std::uint64_t seed) {
    sft::Rng rng(seed);
    AlignedVector v(n);
    for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
    return v;
}

void gemm_call(Impl impl, bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
               std::size_t ldb, float beta, float* c, std::size_t ldc) {
    switch (impl) {
        case Impl::sft:
        case Impl::sft_fused: sft::kernels::gemm_packed<float>(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc); break;
        case Impl::eigen: sft::kernels::gemm_eigen<float>(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc); break;
        case Impl::openblas:
#if SFT_BENCH_OPENBLAS
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), 1.0f, a, int(lda), b,
                        int(ldb), beta, c, int(ldc));
#endif
            break;
    }
}

void bm_gemm(benchmark::State& state, Impl impl, Shape s, Op op) {
    const auto threads = static_cast<std::size_t>(state.range(0));
    sft::set_num_threads(threads);
    Eigen::setNbThreads(int(threads));
#if SFT_BENCH_OPENBLAS
    openblas_set_num_threads(int(threads));
#endif
    const AlignedVector x = random_vector(s.batch * s.in, 1), w = random_vector(s.out * s.in, 2), g = random_vector(s.batch * s.out, 3);
    const AlignedVector bias = random_vector(s.out, 4);
    AlignedVector c;
    std::size_t m = 0, n = 0, k = 0;
    for (auto _ : state) {
        switch (op) {
            case Op::fwd:
                m = s.batch, n = s.out, k = s.in;
                c.resize(m * n);
                gemm_call(impl, false, true, m, n, k, x.data(), s.in, w.data(), s.in, 0.0f, c.data(), n);
                break;
            case Op::dx:
                m = s.batch, n = s.in, k = s.out;
                c.resize(m * n);
                gemm_call(impl, false, false, m, n, k, g.data(), s.out, w.data(), s.in, 0.0f, c.data(), n);
                break;
            case Op::dw:
                m = s.out, n = s.in, k = s.batch;
                c.resize(m * n);
                gemm_call(impl, true, false, m, n, k, g.data(), s.out, x.data(), s.in, 1.0f, c.data(), n);
                break;
            case Op::fwd_bias_relu:
                m = s.batch, n = s.out, k = s.in;
                c.resize(m * n);
                if (impl == Impl::sft_fused)
                    sft::kernels::gemm_bias_act<float>(false, true, m, n, k, x.data(), s.in, w.data(), s.in, bias.data(),
                                                       sft::kernels::GemmActivation::relu, c.data(), n);
                else {
                    gemm_call(impl, false, true, m, n, k, x.data(), s.in, w.data(), s.in, 0.0f, c.data(), n);
                    for (std::size_t i = 0; i < m; ++i) {
                        float* row = c.data() + i * n;
                        for (std::size_t j = 0; j < n; ++j) row[j] = std::max(0.0f, row[j] + bias[j]);
                    }
                }
                break;
        }
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k), benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k));
}

// FMA peak: 24 independent accumulator chains (more than latency x ports on any x86 core), no
// memory traffic: 2 x lanes x 24 flops per iteration. The accumulators live in a function of
// their own and only their sum escapes, so that they stay in registers.
#if SFT_KERNELS_SIMD
using PeakBatch = sft::kernels::Batch<float>;
constexpr int peak_chains = 24;
constexpr std::int64_t peak_inner = 1000;
__attribute__((noinline)) PeakBatch fma_chains(PeakBatch x, PeakBatch y) {
    PeakBatch acc[peak_chains];
    for (int i = 0; i < peak_chains; ++i) acc[i] = PeakBatch(1.0f + 1e-7f * float(i));
    for (std::int64_t r = 0; r < peak_inner; ++r) {
#pragma GCC unroll 24
        for (int i = 0; i < peak_chains; ++i) acc[i] = xsimd::fma(acc[i], x, y);
    }
    PeakBatch s = acc[0];
    for (int i = 1; i < peak_chains; ++i) s += acc[i];
    return s;
}
#endif

void bm_fma_peak(benchmark::State& state) {
#if SFT_KERNELS_SIMD
    const PeakBatch x(0.999999f), y(1e-7f);
    for (auto _ : state) {
        PeakBatch s = fma_chains(x, y);
        benchmark::DoNotOptimize(s);
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * double(PeakBatch::size) * peak_chains * double(peak_inner),
                                                 benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(sft::kernels::simd_arch_name());
#else
    state.SkipWithError("scalar build");
#endif
}

// STREAM triad a = b + s c over three arrays far larger than the caches (128 MiB each): 12 bytes
// per element (the write-allocate read of a is not counted, as in STREAM).
void bm_triad(benchmark::State& state) {
    const std::size_t n = std::size_t(1) << 25;
    std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    const float s = 3.0f;
    for (auto _ : state) {
        float* __restrict pa = a.data();
        const float* __restrict pb = b.data();
        const float* __restrict pc = c.data();
        for (std::size_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
        benchmark::DoNotOptimize(a.data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

// Each product at 1 thread, timed by CPU time (robust to other processes on a shared machine), and
// at 2 threads, timed by the wall clock (".../2/real_time"): the main thread's CPU time says
// nothing of the work of a second thread.
template <class F>
void register_threads(const std::string& name, F f) {
    benchmark::RegisterBenchmark(name.c_str(), f)->Arg(1)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(name.c_str(), f)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void register_all() {
    benchmark::RegisterBenchmark("fma_peak", bm_fma_peak);
    benchmark::RegisterBenchmark("triad", bm_triad)->Unit(benchmark::kMillisecond);
    const std::pair<Impl, const char*> impls[] = {{Impl::sft, "sft"},
                                                  {Impl::eigen, "eigen"},
#if SFT_BENCH_OPENBLAS
                                                  {Impl::openblas, "openblas"}
#endif
    };
    const std::pair<Op, const char*> ops[] = {{Op::fwd, "fwd"}, {Op::dx, "dx"}, {Op::dw, "dw"}, {Op::fwd_bias_relu, "fwd_bias_relu"}};
    for (const auto& s : shapes)
        for (const auto& [op, op_name] : ops)
            for (const auto& [impl, impl_name] : impls) {
                if (op == Op::fwd_bias_relu && impl == Impl::sft)  // the fused variant first, then gemm + a pass
                    register_threads((std::string("gemm/") + s.layer + "/" + op_name + "/sft_fused").c_str(),
                                     [s, op = op](benchmark::State& st) { bm_gemm(st, Impl::sft_fused, s, op); });
                register_threads((std::string("gemm/") + s.layer + "/" + op_name + "/" + impl_name).c_str(),
                                 [impl = impl, s, op = op](benchmark::State& st) { bm_gemm(st, impl, s, op); });
            }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
