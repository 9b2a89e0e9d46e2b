// Where a training step of the reference workload spends its time, phase by phase, at a given
// thread count: the step of mlp_epoch.cpp (Fashion-MNIST, MLP 784-512-256-10 with Linear+ReLU
// fused as Sequential fuses them, CE, AdamW, batch 128, one epoch) with the layers called one by
// one and timed between phases. Three extra GEMMs of the step's shapes ("[x]" rows, into scratch
// outputs) are timed on their own and left out of the epoch time. A diagnostic: it calls the
// layers' fusion hooks (forward_act, backward_bias, ...) that Sequential uses internally.
// Usage: step_phases <threads> [epochs (1)]   (compare 1 and 2 threads alternately; the host is
// noisy). With several epochs, the table is the last epoch's (AdamW's step in a later epoch shows
// the cost of subnormal moments, see kernels/adamw.hpp).
#include <sft/parallel.hpp>
#include <sft/sft.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>
using namespace sft;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
    const std::size_t threads = argc > 1 ? std::stoul(argv[1]) : 1;
    const std::size_t epochs = argc > 2 ? std::stoul(argv[2]) : 1;
    sft::set_num_threads(threads);
    auto train = data::load_fashion_mnist<float>("train", data::fashion_mnist_default_dir);
    train = data::TensorDataset<float>(train.x().reshape({train.size(), 784}), train.y());
    manual_seed(0);
    nn::Linear<float> fc1(784, 512), fc2(512, 256), fc3(256, 10);
    nn::ReLU<float> r1, r2;
    std::vector<nn::Parameter<float>*> ps;
    for (auto* m : {&fc1, &fc2, &fc3}) for (auto p : m->parameters()) ps.push_back(p);
    optim::AdamW<float> opt(ps, optim::AdamWOptions(1e-3).weight_decay(0.01));
    loss::CrossEntropy<float> crit;
    data::DataLoader<float> loader(train, data::DataLoaderOptions().batch_size(128).shuffle(true).seed(1));
    const char* names[] = {"loader", "zero_grad", "fc1 fwd", "fc2 fwd", "fc3 fwd", "loss f+b", "fc3 bwd(dW,db,dX)", "relu2 bwd+bias",
                           "fc2 bwd(dW,dX)", "relu1 bwd+bias", "fc1 bwd(dW)", "step", "[x] fc1 dW gemm", "[x] fc2 dW gemm", "[x] fc2 dX gemm"};
    const int P = 15;
    double acc[P] = {};
    Tensor<float> s1({512, 784}), s2({256, 512}), s3({128, 512});
    double t0 = 0, tall = 0;
    std::size_t steps = 0;
    for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
    std::fill(acc, acc + P, 0.0);
    t0 = tall = now();
    steps = 0;
    for (const data::Batch<float>& b : loader) {
        double t = now(); acc[0] += t - t0;
        auto lap = [&](int i) { double u = now(); acc[i] += u - t; t = u; };
        opt.zero_grad(); lap(1);
        Tensor<float> h1 = fc1.forward_act(b.x, kernels::GemmActivation::relu, r1.fused_output_buffer()); r1.set_fused_output(h1); lap(2);
        Tensor<float> h2 = fc2.forward_act(h1, kernels::GemmActivation::relu, r2.fused_output_buffer()); r2.set_fused_output(h2); lap(3);
        Tensor<float> lo = fc3.forward(h2); lap(4);
        crit.forward(lo, b.y); Tensor<float> g = crit.backward(); lap(5);
        g = fc3.backward(g, true); lap(6);
        // extra isolated GEMMs (same shapes, scratch outputs), timed separately
        Tensor<float> dz2 = r2.backward_bias(g, fc2.trainable_bias_grad()); lap(7);
        kernels::gemm<float>(true, false, 256, 512, 128, 1.f, dz2.data(), 256, h1.data(), 512, 1.f, s2.data(), 512); lap(13);
        kernels::gemm<float>(false, false, 128, 512, 256, 1.f, dz2.data(), 256, fc2.weight().value().data(), 512, 0.f, s3.data(), 512); lap(14);
        g = fc2.backward_without_bias(dz2, true); lap(8);
        Tensor<float> dz1 = r1.backward_bias(g, fc1.trainable_bias_grad()); lap(9);
        kernels::gemm<float>(true, false, 512, 784, 128, 1.f, dz1.data(), 512, b.x.data(), 784, 1.f, s1.data(), 784); lap(12);
        fc1.backward_without_bias(dz1, false); lap(10);
        opt.step(); lap(11);
        t0 = t; ++steps;
    }
    }
    double total = now() - tall, extra = acc[12] + acc[13] + acc[14];
    std::printf("threads %zu steps %zu epoch %zu (excl [x]) %.3f s\n", threads, steps, epochs, total - extra);
    for (int i = 0; i < P; ++i) std::printf("%-22s %8.1f ms %7.1f us/step\n", names[i], acc[i] * 1e3, acc[i] * 1e6 / steps);
}
