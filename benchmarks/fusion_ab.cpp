// Fused against unfused layer pairs, interleaved in one process so that the host's drift hits both
// alike: a training step's forward + backward of the conv workload's network (conv_epoch.cpp:
// conv 1->32, ReLU, max-pool, conv 32->64, ReLU, max-pool, flatten, Linear 1600->256, ReLU, Linear
// 256->6) on one batch of 128 random 28 x 28 images, alternating Sequential::set_fusion(true) and
// (false) step by step (Conv2d + ReLU and Linear + ReLU fused, or every layer on its own; the
// results are bit-identical, see tests/nn/conv2d_test.cpp).
// Run: build/benchmarks/fusion_ab [threads] [steps]   (prints the mean step times and their ratio)
#include <sft/nn/activation.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/flatten.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/pool.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
    using namespace sft::nn;
    const std::size_t threads = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1;
    const int steps = argc > 2 ? std::atoi(argv[2]) : 200;
    sft::set_num_threads(threads);
    sft::Rng rng(1);
    Sequential<float> m;
    m.add("conv1", Conv2d<float>(1, 32, 3, 1, 0, true, rng));
    m.add("act1", ReLU<float>());
    m.add("pool1", MaxPool2d<float>(2));
    m.add("conv2", Conv2d<float>(32, 64, 3, 1, 0, true, rng));
    m.add("act2", ReLU<float>());
    m.add("pool2", MaxPool2d<float>(2));
    m.add("flatten", Flatten<float>());
    m.add("fc1", Linear<float>(1600, 256, true, rng));
    m.add("act3", ReLU<float>());
    m.add("head", Linear<float>(256, 6, true, rng));
    sft::Tensor<float> x = sft::Tensor<float>::empty({128, 1, 28, 28});
    for (auto& v : x) v = static_cast<float>(rng.uniform(0, 1));
    sft::Tensor<float> gy = sft::Tensor<float>::empty({128, 6});
    for (auto& v : gy) v = static_cast<float>(rng.uniform(-1, 1));
    double total[2] = {0, 0};
    int counted[2] = {0, 0};
    const int warmup = 20;
    for (int it = 0; it < warmup + 2 * steps; ++it) {
        const bool fused = it % 2 == 1;
        m.set_fusion(fused);
        const auto t0 = std::chrono::steady_clock::now();
        m.forward(x);
        m.backward(gy, /*need_input_grad=*/false);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (it >= warmup) {
            total[fused] += s;
            ++counted[fused];
        }
    }
    const double unfused_ms = total[0] / counted[0] * 1e3, fused_ms = total[1] / counted[1] * 1e3;
    std::printf("threads %zu, %d steps each: unfused %.2f ms, fused %.2f ms per forward + backward\n", threads, steps, unfused_ms,
                fused_ms);
    std::printf("RESULT threads=%zu unfused_ms=%.3f fused_ms=%.3f fused_over_unfused=%.3f\n", threads, unfused_ms, fused_ms,
                fused_ms / unfused_ms);
}
