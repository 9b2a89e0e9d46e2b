// Memory-bound kernels in GB/s, to set against the triad of gemm_bench (same machine, same run):
//   adamw/<threads>   the fused AdamW update (kernels::adam_update) over 10M parameters: it moves
//                     28 bytes per parameter (reads p, g, m, v; writes p, m, v). With 2 threads
//                     the parameters are cut into ranges on sft's pool (detail::parallel_for):
//                     every element is updated independently, so the result is the same.
//   relu_fwd, relu_bwd on the MLP's [128, 512] activations (in cache: per-call overhead shows).
// Run: build/benchmarks/kernels_bench --benchmark_min_time=0.5
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/activation.hpp>
#include <sft/kernels/adamw.hpp>
#include <sft/parallel.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

void bm_adamw(benchmark::State& state) {
    const auto threads = static_cast<std::size_t>(state.range(0));
    sft::set_num_threads(threads);
    const std::size_t n = 10'000'000;
    std::vector<float> p(n, 0.5f), g(n, 0.01f), m(n, 0.0f), v(n, 0.0f);
    const auto c = sft::kernels::adam_coefficients<float>(1e-3, 0.9, 0.999, 1e-8, 0.01, /*decoupled=*/true, 1.0);
    for (auto _ : state) {
        sft::detail::parallel_for(n, 1 << 16, [&](std::size_t b, std::size_t e) {
            sft::kernels::adam_update(p.data() + b, g.data() + b, m.data() + b, v.data() + b, static_cast<float*>(nullptr), e - b, c);
        });
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(28.0 * double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

void bm_relu_fwd(benchmark::State& state) {
    const std::size_t n = 128 * 512;
    std::vector<float> x(n, -0.25f), y(n);
    for (std::size_t i = 0; i < n; i += 2) x[i] = 0.5f;
    for (auto _ : state) {
        sft::kernels::relu_forward(x.data(), y.data(), n);
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(8.0 * double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

void bm_relu_bwd(benchmark::State& state) {
    const std::size_t n = 128 * 512;
    std::vector<float> dy(n, 0.1f), y(n, 0.0f), dx(n);
    for (std::size_t i = 0; i < n; i += 2) y[i] = 0.5f;
    for (auto _ : state) {
        sft::kernels::relu_backward(dy.data(), y.data(), dx.data(), n);
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}

}  // namespace

BENCHMARK(bm_adamw)->Name("adamw")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_relu_fwd)->Name("relu_fwd");
BENCHMARK(bm_relu_bwd)->Name("relu_bwd");
BENCHMARK_MAIN();
