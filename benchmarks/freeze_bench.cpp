// What freezing saves in backward: an MLP 784-512-256-10 on a batch of 128 (the reference workload's
// shapes), backward after one forward, with
//   full        every parameter trainable (full fine-tuning),
//   head_only   fc1 and fc2 frozen: backward stops below fc3 (the lowest trainable layer),
//   no_stop     fc1 and fc2 frozen but the input gradient requested all the way down, which is
//               what backward would cost without the stop.
// Run: build/bench/benchmarks/freeze_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <sft/sft.hpp>

#include <benchmark/benchmark.h>

namespace {

enum class Mode { full, head_only, no_stop };

void run(benchmark::State& state, Mode mode) {
    sft::manual_seed(0);
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(784, 512));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(512, 256));
    model.add("act2", sft::nn::ReLU<float>());
    model.add("fc3", sft::nn::Linear<float>(256, 10));
    if (mode != Mode::full) {
        model.freeze("fc1");
        model.freeze("fc2");
    }
    sft::Tensor<float> x({128, 784});
    sft::Rng rng(1);
    for (auto& v : x) v = static_cast<float>(rng.uniform());
    sft::Tensor<float> g({128, 10}, 0.01f);
    model.forward(x);
    for (auto _ : state) {
        sft::Tensor<float> gx = model.backward(g, /*need_input_grad=*/mode == Mode::no_stop);
        benchmark::DoNotOptimize(gx.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * 128);
}

}  // namespace

BENCHMARK_CAPTURE(run, full, Mode::full)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(run, head_only, Mode::head_only)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(run, no_stop, Mode::no_stop)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
