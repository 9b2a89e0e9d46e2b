// Memory-bound kernels in GB/s (1 GB = 1e9 bytes), with the machine's bandwidth measured by the
// same binary on the same working-set sizes. The last argument of each benchmark is the number of
// threads (sft::set_num_threads); work is cut into chunks by size only, on sft's pool.
//   adamw/<thr>            AdamW<float>::step() over 10M parameters (a [2000, 4000] weight, its
//                          [4000] bias and a [1000, 1996] weight): 28 bytes per parameter (reads
//                          p, g, m, v; writes p, m, v). p, g, m, v are 160 MB: in the 300 MiB L3.
//   triad_l3/<thr>         STREAM triad a = b + s c over three arrays of 160 MB together, the
//                          working set of adamw/; STREAM's convention: 12 bytes per element
//                          (3 x 4; the write-allocate read of a is not counted).
//   adamw_dram/<thr>       AdamW<float>::step() over 64M parameters ([8192, 8192]): 1 GiB, far
//                          beyond the L3; 28 bytes per parameter.
//   triad_dram/<thr>       the triad over three arrays of 1 GiB together (3 x 341 MiB).
//   zero_grad/<thr>        AdamW<float>::zero_grad() over the 10M parameters of adamw/, then
//                          grad() of each (zero_grad only marks; grad() writes the zeros, what a
//                          layer that adds into its gradient costs): 4 bytes written per parameter
//                          (40 MB, in the L3). Linear's weight gradients skip this pass altogether.
//   zero_grad_dram/<thr>   the same over the 64M parameters of adamw_dram/ (256 MiB of gradients
//                          over 1 GiB of parameters and state).
//   relu_fwd, relu_bwd     on the MLP's [128, 512] activations (in cache: per-call overhead shows).
//   cross_entropy/..., relu_backward_bias/..., bias_add_col_sums/..., layernorm/..., gelu/...,
//   dropout/..., maxpool2x2/...   the other kernels, forward + backward through their layer or
//                          loss, at 1 and 2 threads; BYTES counts each tensor once.
// At the end (console output only) a summary sets AdamW against the triad of the same size: the
// issue's target is AdamW >= 80% of the triad's bandwidth. Rates are the medians when
// --benchmark_repetitions is given, by wall time and by the main thread's CPU time (at 1 thread
// the better figure on a machine shared with other processes; at 2 threads only an estimate).
// Run: build/benchmarks/kernels_bench --benchmark_repetitions=5 --benchmark_min_time=0.3
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/activation.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/dropout.hpp>
#include <sft/nn/layernorm.hpp>
#include <sft/nn/module.hpp>
#include <sft/nn/pool.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/parallel.hpp>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

constexpr std::size_t params_l3 = 10'000'000;
constexpr std::size_t params_dram = std::size_t(1) << 26;  // 64M: 1 GiB of p, g, m, v

// A model's parameters and an AdamW over them (lr 1e-3, wd 0.01, as the reference workload).
struct AdamWSetup {
    std::vector<std::unique_ptr<sft::nn::Parameter<float>>> params;
    std::unique_ptr<sft::optim::AdamW<float>> opt;

    explicit AdamWSetup(std::size_t total) {
        std::vector<sft::Shape> shapes;
        if (total == params_l3) shapes = {{2000, 4000}, {4000}, {1000, 1996}};
        else shapes = {{8192, 8192}};
        std::vector<sft::nn::Parameter<float>*> raw;
        for (std::size_t i = 0; i < shapes.size(); ++i) {
            params.push_back(std::make_unique<sft::nn::Parameter<float>>("p" + std::to_string(i), sft::Tensor<float>(shapes[i], 0.5f)));
            params.back()->grad().fill_(0.01f);
            raw.push_back(params.back().get());
        }
        opt = std::make_unique<sft::optim::AdamW<float>>(raw, sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
        opt->step();  // allocates the state (touches every page before timing)
    }
};

void bm_adamw(benchmark::State& state, std::size_t n) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    AdamWSetup s(n);
    for (auto _ : state) {
        s.opt->step();
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(28.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_zero_grad(benchmark::State& state, std::size_t n) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    AdamWSetup s(n);
    for (auto _ : state) {
        s.opt->zero_grad();  // marks only (see optim.md) ...
        for (auto& p : s.params) benchmark::DoNotOptimize(p->grad().data());  // ... the zeros written on access, on the pool
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(4.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

// STREAM triad a = b + s c over n floats per array, cut as the optimizer cuts (chunks of at least
// 16K elements, at most 256 chunks, from n only) on sft's pool.
void bm_triad(benchmark::State& state, std::size_t n) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    const float s = 3.0f;
    const sft::detail::Chunking cut(n, std::size_t(1) << 14, 256);
    for (auto _ : state) {
        sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t k) {
            float* __restrict pa = a.data();
            const float* __restrict pb = b.data();
            const float* __restrict pc = c.data();
            for (std::size_t i = cut.begin(k), e = cut.end(k, n); i < e; ++i) pa[i] = pb[i] + s * pc[i];
        });
        benchmark::DoNotOptimize(a.data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_relu_fwd(benchmark::State& state) {
    const std::size_t n = 128 * 512;
    std::vector<float> x(n, -0.25f), y(n);
    for (std::size_t i = 0; i < n; i += 2) x[i] = 0.5f;
    for (auto _ : state) {
        sft::kernels::relu_forward(x.data(), y.data(), n);
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(8.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_relu_bwd(benchmark::State& state) {
    const std::size_t n = 128 * 512;
    std::vector<float> dy(n, 0.1f), y(n, 0.0f), dx(n);
    for (std::size_t i = 0; i < n; i += 2) y[i] = 0.5f;
    for (auto _ : state) {
        sft::kernels::relu_backward(dy.data(), y.data(), dx.data(), n);
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

// The other kernels, through the layers and losses that run them, forward + backward, at 1 and
// 2 threads (the last argument); BYTES counts each tensor read or written once (a lower bound).
sft::Tensor<float> random_tensor(const sft::Shape& shape, std::uint64_t seed, double lo = -1, double hi = 1) {
    sft::Rng rng(seed);
    sft::Tensor<float> t = sft::Tensor<float>::empty(shape);
    for (auto& v : t) v = static_cast<float>(rng.uniform(lo, hi));
    return t;
}

// Softmax + cross-entropy and its gradient in one pass per row (kernels/softmax.hpp): the MLP's
// [128, 10] logits, and a language model's [64, 50257] (GPT-2's vocabulary).
void bm_cross_entropy(benchmark::State& state, std::size_t rows, std::size_t classes) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    const sft::Tensor<float> logits = random_tensor({rows, classes}, 1, -4, 4);
    sft::Tensor<std::int64_t> targets = sft::Tensor<std::int64_t>::empty({rows});
    for (std::size_t i = 0; i < rows; ++i) targets[i] = static_cast<std::int64_t>((i * 7919) % classes);
    sft::loss::CrossEntropy<float> ce;
    for (auto _ : state) {
        benchmark::DoNotOptimize(ce.forward(logits, targets));
        benchmark::DoNotOptimize(ce.backward().data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(8.0 * double(rows * classes), benchmark::Counter::kIsIterationInvariantRate);
}

// A sequential of one layer, forward then backward (input gradient wanted): `bytes` per element of
// the input for the pair.
template <class Make>
void bm_layer(benchmark::State& state, Make make, sft::Shape shape, double bytes_per_element) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    auto layer = make();
    const sft::Tensor<float> x = random_tensor(shape, 2);
    const sft::Tensor<float> y0 = layer.forward(x);
    const sft::Tensor<float> gy = random_tensor(y0.shape(), 3);
    layer.backward(gy);
    for (auto _ : state) {
        benchmark::DoNotOptimize(layer.forward(x).data());
        benchmark::DoNotOptimize(layer.backward(gy).data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(bytes_per_element * double(shape.numel()), benchmark::Counter::kIsIterationInvariantRate);
}

// The fused ReLU backward and bias gradient of a Linear + ReLU (kernels::relu_backward_bias) on
// the MLP's [128, 512], and the bias add and column sums alone.
void bm_relu_backward_bias(benchmark::State& state) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    const std::size_t rows = 128, cols = 512;
    const sft::Tensor<float> dy = random_tensor({rows, cols}, 4), y = random_tensor({rows, cols}, 5);
    sft::Tensor<float> dz = sft::Tensor<float>::empty({rows, cols});
    std::vector<float> db(cols, 0.0f);
    for (auto _ : state) {
        sft::kernels::relu_backward_bias(dy.data(), y.data(), dz.data(), rows, cols, db.data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(rows * cols), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_bias_and_col_sums(benchmark::State& state) {
    sft::set_num_threads(static_cast<std::size_t>(state.range(0)));
    const std::size_t rows = 128, cols = 512;
    sft::Tensor<float> y = random_tensor({rows, cols}, 6);
    const sft::Tensor<float> bias = random_tensor({cols}, 7);
    std::vector<float> sums(cols, 0.0f);
    for (auto _ : state) {
        sft::kernels::add_bias(y.data(), bias.data(), rows, cols);
        sft::kernels::col_sums(y.data(), rows, cols, sums.data());
        benchmark::ClobberMemory();
    }
    state.counters["BYTES"] = benchmark::Counter(12.0 * double(rows * cols), benchmark::Counter::kIsIterationInvariantRate);
}

// The console reporter, which also keeps each benchmark's bytes per second (wall and main-thread
// CPU time; the median when there are repetitions) and prints AdamW against the triad at the end.
class SummaryReporter : public benchmark::ConsoleReporter {
public:
    explicit SummaryReporter(OutputOptions options) : ConsoleReporter(options) {}

    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const Run& r : runs) {
            if (r.error_occurred) continue;
            const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
            if (r.run_type == Run::RT_Aggregate && !median) continue;
            std::string name = r.run_name.str();
            if (name.size() > 10 && name.compare(name.size() - 10, 10, "/real_time") == 0) name.resize(name.size() - 10);
            auto it = r.counters.find("BYTES");
            if (it == r.counters.end()) continue;
            // The counter is a rate over wall time; scale it to CPU time for the other figure.
            Rate& rate = rates_[name];
            if (!median && rate.from_median) continue;
            const double wall = r.GetAdjustedRealTime(), cpu = r.GetAdjustedCPUTime();
            rate.wall = it->second.value;
            rate.cpu = cpu > 0 ? it->second.value * wall / cpu : 0.0;
            rate.from_median = median;
        }
    }
    void Finalize() override {
        ConsoleReporter::Finalize();
        std::FILE* out = stdout;
        fmt::print(out, "\nsummary: GB/s (1e9 bytes/s) by wall time / by the main thread's CPU time; AdamW 28 bytes per parameter,\n"
                        "triad 12 bytes per element (STREAM's count); on a busy machine trust the CPU-time figure at 1 thread\n");
        const char* sizes[][3] = {{"160 MB (in L3)", "adamw", "triad_l3"}, {"1 GiB (DRAM)", "adamw_dram", "triad_dram"}};
        for (const auto& sz : sizes)
            for (int t : {1, 2}) {
                const Rate adam = pick(fmt::format("{}/{}", sz[1], t)), triad = pick(fmt::format("{}/{}", sz[2], t));
                if (adam.wall <= 0 || triad.wall <= 0) continue;
                fmt::print(out, "{:<15} {} thr: AdamW {:5.1f} / {:5.1f}  triad {:5.1f} / {:5.1f}  AdamW / triad {:.2f} / {:.2f}\n", sz[0], t,
                           adam.wall / 1e9, adam.cpu / 1e9, triad.wall / 1e9, triad.cpu / 1e9, adam.wall / triad.wall, adam.cpu / triad.cpu);
            }
        for (const char* z : {"zero_grad", "zero_grad_dram"})
            for (int t : {1, 2}) {
                const Rate r = pick(fmt::format("{}/{}", z, t));
                if (r.wall > 0) fmt::print(out, "{:<15} {} thr: {:5.1f} / {:5.1f} (4 bytes written per parameter)\n", z, t, r.wall / 1e9, r.cpu / 1e9);
            }
    }

private:
    struct Rate {
        double wall = 0, cpu = 0;
        bool from_median = false;
    };
    Rate pick(const std::string& name) const {
        auto it = rates_.find(name);
        return it == rates_.end() ? Rate() : it->second;
    }
    std::map<std::string, Rate> rates_;
};

}  // namespace

int main(int argc, char** argv) {
    for (int t : {1, 2}) {
        const auto args = [t](benchmark::internal::Benchmark* b) { b->Arg(t)->Unit(benchmark::kMillisecond)->UseRealTime(); };
        args(benchmark::RegisterBenchmark("adamw", bm_adamw, params_l3));
        args(benchmark::RegisterBenchmark("triad_l3", bm_triad, params_l3 * 16 / 12));
        args(benchmark::RegisterBenchmark("adamw_dram", bm_adamw, params_dram));
        args(benchmark::RegisterBenchmark("triad_dram", bm_triad, params_dram * 16 / 12));
        args(benchmark::RegisterBenchmark("zero_grad", bm_zero_grad, params_l3));
        args(benchmark::RegisterBenchmark("zero_grad_dram", bm_zero_grad, params_dram));
    }
    benchmark::RegisterBenchmark("relu_fwd", bm_relu_fwd);
    benchmark::RegisterBenchmark("relu_bwd", bm_relu_bwd);
    const auto make_layernorm = [] { return sft::nn::LayerNorm<float>(768); };
    const auto make_gelu = [] { return sft::nn::GELU<float>(); };
    const auto make_dropout = [] { return sft::nn::Dropout<float>(0.1, 9); };
    const auto make_maxpool = [] { return sft::nn::MaxPool2d<float>(2); };
    for (int t : {1, 2}) {
        const auto args = [t](benchmark::internal::Benchmark* b) { b->Arg(t)->Unit(benchmark::kMicrosecond)->UseRealTime(); };
        args(benchmark::RegisterBenchmark("cross_entropy/128x10", bm_cross_entropy, 128, 10));
        args(benchmark::RegisterBenchmark("cross_entropy/64x50257", bm_cross_entropy, 64, 50257));
        args(benchmark::RegisterBenchmark("relu_backward_bias/128x512", bm_relu_backward_bias));
        args(benchmark::RegisterBenchmark("bias_add_col_sums/128x512", bm_bias_and_col_sums));
        // forward reads x, writes y; backward reads dy (and x or y), writes dx: 5-6 x 4 bytes
        args(benchmark::RegisterBenchmark("layernorm/1024x768", bm_layer<decltype(make_layernorm)>, make_layernorm,
                                          sft::Shape{1024, 768}, 20.0));
        args(benchmark::RegisterBenchmark("gelu/1024x3072", bm_layer<decltype(make_gelu)>, make_gelu, sft::Shape{1024, 3072},
                                          20.0));
        args(benchmark::RegisterBenchmark("dropout/1024x3072", bm_layer<decltype(make_dropout)>, make_dropout,
                                          sft::Shape{1024, 3072}, 20.0));
        // max-pool 2x2 on conv1's output: reads x, writes y/4 and the argmax, then dx
        args(benchmark::RegisterBenchmark("maxpool2x2/128x32x26x26", bm_layer<decltype(make_maxpool)>, make_maxpool,
                                          sft::Shape{128, 32, 26, 26}, 9.0));
    }
    // The summary needs the console format; --benchmark_format=json (compare.sh) keeps the default reporter.
    bool console = true, color = true;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0 && std::strcmp(argv[i] + 19, "console") != 0) console = false;
        if (std::strcmp(argv[i], "--benchmark_color=false") == 0) color = false;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    if (console) {
        SummaryReporter reporter(color && isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_ColorTabular
                                                                : benchmark::ConsoleReporter::OO_Tabular);
        benchmark::RunSpecifiedBenchmarks(&reporter);
    } else {
        benchmark::RunSpecifiedBenchmarks();
    }
    benchmark::Shutdown();
    return 0;
}
