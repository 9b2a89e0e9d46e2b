// The reference workload of benchmarks/mlp_epoch.cpp written against tiny-dnn (Debian's `tiny-dnn`
// package, 1.0.0a3, header-only), as a tiny-dnn user would: network<sequential> of
// fully_connected_layer<relu> 784-512 and 512-256 and fully_connected_layer<softmax> 256-10,
// cross_entropy_multiclass (softmax + cross-entropy, as torch's cross_entropy), network::train with
// batch 128, one epoch over the 60,000 training images in a fresh random order, then the accuracy
// on the 10,000 test images. The images are read with sft's IDX loader, as the libtorch peer does;
// reading and converting them is not timed.
//
// Differences from the sft and libtorch programs, all tiny-dnn's:
// - Optimizer: tiny_dnn::adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), because tiny-dnn has no AdamW
//   and no weight decay in adam at all: the run has NO weight decay (the others use 0.01). Its
//   update also puts eps inside the square root: w -= lr m^ / sqrt(v^ + eps) (torch: sqrt(v^) + eps).
// - network::train reports no training loss: the RESULT line says loss=nan and gives the mean
//   cross-entropy on the test set as test_loss instead.
// - Backward computes the input gradient of fc1 too, and keeps one weight gradient per sample of the
//   batch (128 x 401,408 floats for fc1), reduced at the update: its peak RSS shows it.
//
// Threads. tiny-dnn chooses its parallelisation at compile time with macros (config.h leaves them
// all undefined, and Debian's package builds nothing: the changelog of 1.0.0a3+ds-3 says "switch
// off tbb usage"). Without a macro, tiny_dnn::parallel_for (util/parallel_for.h) launches
// std::thread::hardware_concurrency() std::async tasks per parallel loop (new threads on every
// call: per sample and layer in backward) and there is no run-time setting. So CMake builds this
// file twice:
//   tinydnn_mlp_epoch     as shipped: std::async with hardware_concurrency() threads; --threads
//                         must equal hardware_concurrency() (2 on the benchmark machine).
//   tinydnn_mlp_epoch_st  with CNN_SINGLE_THREAD (tiny-dnn's own switch): --threads must be 1.
// Both define CNN_USE_AVX (tiny-dnn's AVX versions of its vectorised dot and muladd; off in
// config.h, on by default in tiny-dnn's own CMakeLists: option USE_AVX ON) and undefine
// CNN_USE_GEMMLOWP (only its quantized layers need gemmlowp, which Debian does not ship).
// Debian's package declares no dependencies, but its headers need libcereal-dev and libstb-dev
// (under the path third_party/stb/, which CMake provides with a symlink); see CMakeLists.txt.
//
// Usage: tinydnn_mlp_epoch[_st] [--threads N] [--batch B] [--seed S] [--data DIR] [--max-steps K]
// --max-steps K trains on the first K batches only (to check the epoch length: a full epoch takes
// minutes); the RESULT line then has no epoch_s but epoch_s_extrapolated (and
// cpu_s_extrapolated), the time of K steps scaled to a full epoch, plus steps=K of=M.
// Last line: RESULT impl=tinydnn threads=... batch=... epoch_s=... cpu_s=... test_acc=... loss=nan
//            test_loss=... peak_rss_mb=...
#define CNN_NO_SERIALIZATION  // network::save/load are not used: less to compile
#include "../epoch_clock.hpp"

#include <tiny_dnn/config.h>
#undef CNN_USE_GEMMLOWP  // config.h defines it on every non-Windows system; gemmlowp is not packaged

// The order of tiny_dnn/tiny_dnn.h (which itself cannot be included: it pulls the Caffe converter,
// protobuf and generated caffe.pb.h). convolutional_layer.h brings `using namespace
// tiny_dnn::core`, which the fully connected kernels rely on.
#include <tiny_dnn/network.h>
#include <tiny_dnn/nodes.h>
#include <tiny_dnn/layers/input_layer.h>
#include <tiny_dnn/layers/feedforward_layer.h>
#include <tiny_dnn/layers/convolutional_layer.h>
#include <tiny_dnn/layers/fully_connected_layer.h>
#include <tiny_dnn/activations/activation_function.h>
#include <tiny_dnn/lossfunctions/loss_function.h>
#include <tiny_dnn/optimizers/optimizer.h>

#include <sft/data/fashion_mnist.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using sft_bench::cpu_s;
using sft_bench::now_s;
using sft_bench::peak_rss_mb;

// Copies an sft dataset into tiny-dnn's containers: one vec_t of 784 floats per image, one label each.
void to_tinydnn(const sft::data::TensorDataset<float>& d, std::vector<tiny_dnn::vec_t>& x, std::vector<tiny_dnn::label_t>& y) {
    const std::size_t n = d.size();
    const float* px = d.x().data();
    const std::int64_t* py = d.y().data();
    x.assign(n, tiny_dnn::vec_t());
    y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        x[i].assign(px + i * 784, px + (i + 1) * 784);
        y[i] = static_cast<tiny_dnn::label_t>(py[i]);
    }
}

// The number of threads tiny-dnn's parallel loops use in this build (see the header).
unsigned build_threads() {
#if defined(CNN_SINGLE_THREAD)
    return 1;
#elif defined(CNN_USE_OMP) || defined(CNN_USE_TBB)
#error "this peer is built either as shipped (std::async) or with CNN_SINGLE_THREAD"
#else
    return std::thread::hardware_concurrency();
#endif
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t threads = 1, batch = 128, max_steps = 0;
    unsigned seed = 0;
    std::string dir = sft::data::fashion_mnist_default_dir;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--threads") threads = std::stoul(value);
        else if (key == "--batch") batch = std::stoul(value);
        else if (key == "--seed") seed = unsigned(std::stoul(value));
        else if (key == "--data") dir = value;
        else if (key == "--max-steps") max_steps = std::stoul(value);
        else {
            std::fprintf(stderr, "unknown option %s\n", key.c_str());
            return 2;
        }
    }
    if (threads != build_threads()) {
        std::fprintf(stderr,
                     "tinydnn_mlp_epoch: --threads %zu, but this build runs tiny-dnn's loops on %u thread(s) (no run-time setting): "
                     "use tinydnn_mlp_epoch_st for 1 thread, tinydnn_mlp_epoch for std::thread::hardware_concurrency() = %u\n",
                     threads, build_threads(), std::thread::hardware_concurrency());
        return 2;
    }
    if (batch == 0) {
        std::fprintf(stderr, "tinydnn_mlp_epoch: --batch must be at least 1\n");
        return 2;
    }

    std::vector<tiny_dnn::vec_t> train_x, test_x;
    std::vector<tiny_dnn::label_t> train_y, test_y;
    to_tinydnn(sft::data::load_fashion_mnist<float>("train", dir), train_x, train_y);
    to_tinydnn(sft::data::load_fashion_mnist<float>("test", dir), test_x, test_y);
    const std::size_t n = train_x.size();
    const std::size_t full_steps = (n + batch - 1) / batch;
    const std::size_t steps = max_steps > 0 ? std::min(max_steps, full_steps) : full_steps;
    const std::size_t samples = std::min(n, steps * batch);

    // Weight initialisation (tiny-dnn's default: Xavier weights, zero biases) and the shuffle draw
    // from the seed.
    tiny_dnn::set_random_seed(seed);
    std::mt19937_64 shuffle_rng(seed);
    using tiny_dnn::fully_connected_layer;
    namespace act = tiny_dnn::activation;
    tiny_dnn::network<tiny_dnn::sequential> net;
    net << fully_connected_layer<act::relu>(784, 512) << fully_connected_layer<act::relu>(512, 256)
        << fully_connected_layer<act::softmax>(256, 10);
    tiny_dnn::adam opt;  // alpha 1e-3, b1 0.9, b2 0.999, eps 1e-8: the defaults are the workload's
    opt.alpha = tiny_dnn::float_t(1e-3);

    std::size_t done = 0;
    const double t0 = now_s(), c0 = cpu_s();
    // A fresh random order, as the others' shuffling loaders (moves, no copies of the images).
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), std::size_t(0));
    std::shuffle(perm.begin(), perm.end(), shuffle_rng);
    std::vector<tiny_dnn::vec_t> x(samples);
    std::vector<tiny_dnn::label_t> y(samples);
    for (std::size_t i = 0; i < samples; ++i) {
        x[i] = std::move(train_x[perm[i]]);
        y[i] = train_y[perm[i]];
    }
    net.train<tiny_dnn::cross_entropy_multiclass>(
        opt, x, y, batch, /*epoch=*/1,
        [&] {
            if (++done % 50 == 0)
                std::printf("step %zu/%zu: %.1f s\n", done, steps, now_s() - t0), std::fflush(stdout);
        },
        [] {});
    const double epoch_s = now_s() - t0, epoch_cpu_s = cpu_s() - c0;
    std::printf("epoch 0: %.3f s (%zu steps of %zu)\n", epoch_s, steps, full_steps);

    // Test accuracy and mean cross-entropy from the softmax outputs.
    std::size_t correct = 0;
    double test_loss = 0;
    const std::vector<tiny_dnn::vec_t> out = net.test(test_x);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const auto best = std::size_t(std::max_element(out[i].begin(), out[i].end()) - out[i].begin());
        correct += best == test_y[i];
        test_loss -= std::log(std::max(double(out[i][test_y[i]]), 1e-30));
    }
    const double acc = double(correct) / double(out.size());
    test_loss /= double(out.size());

    if (steps == full_steps) {
        std::printf("RESULT impl=tinydnn threads=%zu batch=%zu epoch_s=%.4f cpu_s=%.4f test_acc=%.4f loss=nan test_loss=%.4f peak_rss_mb=%.1f\n",
                    threads, batch, epoch_s, epoch_cpu_s, acc, test_loss, peak_rss_mb());
    } else {  // a partial epoch: its time scaled to a full one, its accuracy that of a partly trained net
        const double scale = double(full_steps) / double(steps);
        std::printf("RESULT impl=tinydnn threads=%zu batch=%zu epoch_s_extrapolated=%.4f cpu_s_extrapolated=%.4f steps=%zu of=%zu "
                    "test_acc_partial=%.4f loss=nan test_loss_partial=%.4f peak_rss_mb=%.1f\n",
                    threads, batch, epoch_s * scale, epoch_cpu_s * scale, steps, full_steps, acc, test_loss, peak_rss_mb());
    }
    return 0;
}
