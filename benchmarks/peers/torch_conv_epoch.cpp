// The convolutional workload of benchmarks/conv_epoch.cpp written against libtorch (Debian's
// libtorch-dev), as a libtorch user would at its best: the network of
// examples/pretrain_fashion_mnist.cpp (conv1 1->32 3x3, ReLU, MaxPool2d(2), conv2 32->64 3x3, ReLU,
// MaxPool2d(2), Flatten, Linear 1600->256, ReLU, Linear 256->6) on the six source classes
// {0, 2, 4, 5, 7, 8} (36,000 training images), tensors in memory, a random permutation per epoch,
// index_select for each batch, torch::optim::AdamW(lr 1e-3, weight_decay 0.01), cross_entropy, then
// the accuracy on the 6,000 source test images. The images are read (and the classes selected) with
// sft's loader only because torch's MNIST reader does not take the .gz files; reading is not timed.
//
// Usage: torch_conv_epoch [--threads N] [--batch B] [--epochs E] [--seed S] [--data DIR]
// Last line: RESULT impl=libtorch workload=conv threads=... batch=... epoch_s=... cpu_s=... test_acc=... loss=... peak_rss_mb=...
#include "../epoch_clock.hpp"

#include <sft/data/fashion_mnist.hpp>
#include <sft/data/split.hpp>

#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using sft_bench::cpu_s;
using sft_bench::now_s;
using sft_bench::peak_rss_mb;

// Copies an sft dataset into torch tensors: x [N, 1, 28, 28] float, y [N] int64.
std::pair<torch::Tensor, torch::Tensor> to_torch(const sft::data::TensorDataset<float>& d) {
    const auto n = static_cast<std::int64_t>(d.size());
    torch::Tensor x = torch::from_blob(const_cast<float*>(d.x().data()), {n, 1, 28, 28}, torch::kFloat32).clone();
    torch::Tensor y = torch::from_blob(const_cast<std::int64_t*>(d.y().data()), {n}, torch::kInt64).clone();
    return {x, y};
}

}  // namespace

int main(int argc, char** argv) {
    std::int64_t threads = 1, batch = 128, epochs = 1, seed = 0;
    std::string dir = sft::data::fashion_mnist_default_dir;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--threads") threads = std::stoll(value);
        else if (key == "--batch") batch = std::stoll(value);
        else if (key == "--epochs") epochs = std::stoll(value);
        else if (key == "--seed") seed = std::stoll(value);
        else if (key == "--data") dir = value;
        else {
            std::fprintf(stderr, "unknown option %s\n", key.c_str());
            return 2;
        }
    }
    torch::set_num_threads(int(threads));
    torch::manual_seed(seed);

    const std::vector<std::int64_t> classes{0, 2, 4, 5, 7, 8};
    auto [train_x, train_y] = to_torch(sft::data::select_classes(sft::data::load_fashion_mnist<float>("train", dir), classes));
    auto [test_x, test_y] = to_torch(sft::data::select_classes(sft::data::load_fashion_mnist<float>("test", dir), classes));

    namespace nn = torch::nn;
    nn::Sequential model(nn::Conv2d(nn::Conv2dOptions(1, 32, 3)), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                         nn::Conv2d(nn::Conv2dOptions(32, 64, 3)), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                         nn::Linear(1600, 256), nn::ReLU(), nn::Linear(256, std::int64_t(classes.size())));
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.01));

    const std::int64_t n = train_x.size(0);
    double epoch_s = 0, epoch_cpu_s = 0, loss_sum = 0;
    std::int64_t steps = 0;
    for (std::int64_t epoch = 0; epoch < epochs; ++epoch) {
        model->train();
        loss_sum = 0;
        steps = 0;
        const double t0 = now_s(), c0 = cpu_s();
        const torch::Tensor perm = torch::randperm(n, torch::kInt64);
        for (std::int64_t start = 0; start < n; start += batch) {
            const torch::Tensor idx = perm.narrow(0, start, std::min(batch, n - start));
            const torch::Tensor x = train_x.index_select(0, idx), y = train_y.index_select(0, idx);
            opt.zero_grad();
            torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
            loss.backward();
            opt.step();
            loss_sum += loss.item<double>();
            ++steps;
        }
        epoch_s = now_s() - t0;
        epoch_cpu_s = cpu_s() - c0;
        std::printf("epoch %lld: %.3f s, mean loss %.4f\n", (long long)epoch, epoch_s, loss_sum / double(steps));
    }

    model->eval();
    torch::NoGradGuard no_grad;
    std::int64_t correct = 0;
    for (std::int64_t start = 0; start < test_x.size(0); start += 1000) {
        const std::int64_t len = std::min<std::int64_t>(1000, test_x.size(0) - start);
        const torch::Tensor pred = model->forward(test_x.narrow(0, start, len)).argmax(1);
        correct += pred.eq(test_y.narrow(0, start, len)).sum().item<std::int64_t>();
    }
    const double acc = double(correct) / double(test_x.size(0));
    std::printf(
        "RESULT impl=libtorch workload=conv threads=%lld batch=%lld epoch_s=%.4f cpu_s=%.4f test_acc=%.4f loss=%.4f peak_rss_mb=%.1f\n",
        (long long)threads, (long long)batch, epoch_s, epoch_cpu_s, acc, loss_sum / double(steps), peak_rss_mb());
    return 0;
}
