// Builds a model, takes a few AdamW steps and prints the loss: proof that the package works.
#include <sft/sft.hpp>

#include <cstdio>

int main() {
    sft::manual_seed(0);
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(8, 16));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(16, 3));
    sft::Tensor<float> x({6, 8});
    sft::Tensor<std::int64_t> y({6});
    sft::Rng rng(1);
    for (auto& v : x) v = static_cast<float>(rng.normal());
    for (std::size_t i = 0; i < 6; ++i) y[i] = static_cast<std::int64_t>(i % 3);
    sft::loss::CrossEntropy<float> criterion;
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-2));
    float first = 0, last = 0;
    for (int step = 0; step < 20; ++step) {
        opt.zero_grad();
        last = criterion.forward(model.forward(x), y);
        if (step == 0) first = last;
        model.backward(criterion.backward());
        opt.step();
    }
    std::printf("consumer: loss %.4f -> %.4f (sft %s)\n", first, last, sft::version);
    return last < first ? 0 : 1;
}
