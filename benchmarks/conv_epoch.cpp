// The convolutional workload of issue [3/5], written with sft's public API as a user would: one
// pretraining epoch of the network of examples/pretrain_fashion_mnist.cpp (conv1 1->32 3x3, ReLU,
// MaxPool2d(2), conv2 32->64 3x3, ReLU, MaxPool2d(2), Flatten, fc1 1600->256, ReLU, head 256->6)
// on the six source classes {0, 2, 4, 5, 7, 8} of Fashion-MNIST (36,000 training images),
// cross-entropy, AdamW (lr 1e-3, weight decay 0.01, as the example), shuffled batches, then the
// accuracy on the 6,000 test images of those classes.
// benchmarks/peers/torch_conv_epoch.cpp is the same program against libtorch.
//
// Usage: conv_epoch [--threads N] [--batch B] [--epochs E] [--seed S] [--data DIR]
// Prints one line per epoch and a last line that compare.sh parses:
//   RESULT impl=sft workload=conv threads=1 batch=128 epoch_s=... cpu_s=... test_acc=... loss=... gemm_gflop=... peak_rss_mb=...
#include "epoch_clock.hpp"

#include <sft/parallel.hpp>
#include <sft/sft.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

const std::vector<std::int64_t> source_classes{0, 2, 4, 5, 7, 8};

using sft_bench::cpu_s;
using sft_bench::now_s;
using sft_bench::peak_rss_mb;

// The network of examples/pretrain_fashion_mnist.cpp: [N, 1, 28, 28] -> [N, classes].
sft::nn::Sequential<float> make_model(std::size_t classes) {
    using namespace sft::nn;
    Sequential<float> backbone;
    backbone.add("conv1", Conv2d<float>(1, 32, 3));   // [N, 32, 26, 26]
    backbone.add("act1", ReLU<float>());
    backbone.add("pool1", MaxPool2d<float>(2));       // [N, 32, 13, 13]
    backbone.add("conv2", Conv2d<float>(32, 64, 3));  // [N, 64, 11, 11]
    backbone.add("act2", ReLU<float>());
    backbone.add("pool2", MaxPool2d<float>(2));       // [N, 64, 5, 5]
    backbone.add("flatten", Flatten<float>());        // [N, 1600]
    backbone.add("fc1", Linear<float>(1600, 256));
    backbone.add("act3", ReLU<float>());
    Sequential<float> model;
    model.add("backbone", std::move(backbone));
    model.add("head", Linear<float>(256, classes));
    return model;
}

// GEMM-equivalent FLOPs of one conv layer's product per image: 2 Cout Cin K K Hout Wout.
constexpr double conv_flop(double cout, double cin, double k, double hout, double wout) { return 2 * cout * cin * k * k * hout * wout; }

}  // namespace

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

    // Pixels in [0, 1], [N, 1, 28, 28]; labels 0 2 4 5 7 8 remapped to 0..5.
    const auto train = sft::data::select_classes(sft::data::load_fashion_mnist<float>("train", dir), source_classes);
    const auto test = sft::data::select_classes(sft::data::load_fashion_mnist<float>("test", dir), source_classes);

    sft::manual_seed(seed);
    sft::nn::Sequential<float> model = make_model(source_classes.size());
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
    const std::size_t classes = source_classes.size();
    sft::data::DataLoader<float> test_loader(test, sft::data::DataLoaderOptions().batch_size(1000));
    for (const sft::data::Batch<float>& b : test_loader) {
        const sft::Tensor<float> logits = model.forward(b.x);
        for (std::size_t i = 0; i < b.size(); ++i) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < classes; ++c)
                if (logits(i, c) > logits(i, best)) best = c;
            correct += std::int64_t(best) == b.y[i];
        }
    }
    const double acc = double(correct) / double(test.size());
    // The GEMM work an epoch really performs, per image:
    //   conv1 (1->32, 3x3, 26x26 out): forward and weight gradient, 2 x 2*32*1*9*26*26; no input
    //     gradient (its input is the data);
    //   conv2 (32->64, 3x3, 11x11 out): forward, weight gradient and input gradient (col = W^T dy,
    //     then col2im), 3 x 2*64*32*9*11*11;
    //   fc1 (1600->256) and head (256->6): forward, weight gradient and input gradient, 3 x 2 in out.
    // Pooling, ReLU, im2col/col2im, bias, loss and AdamW are not counted (no multiply-adds of a GEMM).
    const double per_sample = 2 * conv_flop(32, 1, 3, 26, 26) + 3 * conv_flop(64, 32, 3, 11, 11) + 3 * 2.0 * (1600 * 256 + 256 * 6);
    const double gflop = per_sample * double(train.size()) * 1e-9;  // of one epoch (the last, the one timed)
    std::printf(
        "RESULT impl=sft workload=conv threads=%zu batch=%zu epoch_s=%.4f cpu_s=%.4f test_acc=%.4f loss=%.4f gemm_gflop=%.3f peak_rss_mb=%.1f\n",
        threads, batch, epoch_s, epoch_cpu_s, acc, loss_sum / double(steps), gflop, peak_rss_mb());
    return 0;
}
