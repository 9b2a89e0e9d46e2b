// The reference workload, written with sft's public API as a user would: Fashion-MNIST, MLP
// 784-512-256-10 with ReLU, cross-entropy, AdamW (lr 1e-3, weight decay 0.01), one epoch over the
// 60,000 training images in shuffled batches, then the accuracy on the 10,000 test images.
// benchmarks/peers/torch_mlp_epoch.cpp is the same program against libtorch; compare.sh runs both.
//
// Usage: mlp_epoch [--threads N] [--batch B] [--epochs E] [--seed S] [--data DIR]
// Prints one line per epoch and a last line that compare.sh parses:
//   RESULT impl=sft threads=1 batch=128 epoch_s=... test_acc=... loss=... gemm_gflop=... peak_rss_mb=...
#include "epoch_clock.hpp"

#include <sft/parallel.hpp>
#include <sft/sft.hpp>
#include "reference_mlp.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using sft_bench::cpu_s;
using sft_bench::now_s;
using sft_bench::peak_rss_mb;

int main(int argc, char** argv) {
    std::size_t threads = 1, batch = 128, epochs = 1;
    std::uint64_t seed = 0;
    std::string dir = sft::data::fashion_mnist_default_dir;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--threads") threads = std::stoul(value);
        else if (key == "--batch") batch = std::stoul(value);
        else if (key == "--epochs") epochs = std::stoul(value);
        else if (key == "--seed") seed = std::stoull(value);
        else if (key == "--data") dir = value;
        else {
            std::fprintf(stderr, "unknown option %s\n", key.c_str());
            return 2;
        }
    }
    sft::set_num_threads(threads);

    // Images [N, 1, 28, 28] viewed as [N, 784] (no copy).
    auto train = sft::data::load_fashion_mnist<float>("train", dir);
    auto test = sft::data::load_fashion_mnist<float>("test", dir);
    train = sft::data::TensorDataset<float>(train.x().reshape({train.size(), 784}), train.y());
    test = sft::data::TensorDataset<float>(test.x().reshape({test.size(), 784}), test.y());

    sft::manual_seed(seed);
    sft::nn::Sequential<float> model;
    bench::add_reference_mlp(model);
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    sft::data::DataLoader<float> loader(train, sft::data::DataLoaderOptions().batch_size(batch).shuffle(true).seed(seed));

    double epoch_s = 0, epoch_cpu_s = 0, loss_sum = 0;
    std::size_t steps = 0;
    for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
        model.train();
        loss_sum = 0;
        steps = 0;
        const double t0 = now_s(), c0 = cpu_s();
        for (const sft::data::Batch<float>& b : loader) {
            opt.zero_grad();
            const sft::Tensor<float> logits = model.forward(b.x);
            loss_sum += criterion.forward(logits, b.y);
            model.backward(criterion.backward(), /*need_input_grad=*/false);
            opt.step();
            ++steps;
        }
        epoch_s = now_s() - t0;
        epoch_cpu_s = cpu_s() - c0;
        std::printf("epoch %zu: %.3f s, mean loss %.4f\n", epoch, epoch_s, loss_sum / double(steps));
    }

    model.eval();
    std::size_t correct = 0;
    sft::data::DataLoader<float> test_loader(test, sft::data::DataLoaderOptions().batch_size(1000));
    for (const sft::data::Batch<float>& b : test_loader) {
        const sft::Tensor<float> logits = model.forward(b.x);
        for (std::size_t i = 0; i < b.size(); ++i) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < 10; ++c)
                if (logits(i, c) > logits(i, best)) best = c;
            correct += std::int64_t(best) == b.y[i];
        }
    }
    const double acc = double(correct) / double(test.size());
    // The GEMM work an epoch really performs: forward 2 in out, weight gradient 2 in out per
    // sample and layer, input gradient 2 in out for fc2 and fc3 only (fc1 needs none).
    const double per_sample = 2.0 * (784 * 512 + 512 * 256 + 256 * 10) * 2 + 2.0 * (512 * 256 + 256 * 10);
    const double gflop = per_sample * double(train.size()) * 1e-9;
    std::printf("RESULT impl=sft threads=%zu batch=%zu epoch_s=%.4f cpu_s=%.4f test_acc=%.4f loss=%.4f gemm_gflop=%.3f peak_rss_mb=%.1f\n", threads, batch,
                epoch_s, epoch_cpu_s, acc, loss_sum / double(steps), gflop, peak_rss_mb());
    return 0;
}
