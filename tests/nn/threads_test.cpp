// A training step of the layers and losses gives the same bits at 1 and at 2 threads: outputs,
// loss, input gradient and every parameter gradient. Sizes are above the threading threshold
// of the kernels (activations, column sums, LayerNorm rows, cross-entropy rows).
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/dropout.hpp>
#include <sft/nn/layernorm.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

using sft::Tensor;
namespace nn = sft::nn;

namespace {

struct StepResult {
    Tensor<float> logits, dx;
    float loss = 0;
    std::vector<Tensor<float>> grads;
};

StepResult run_step(std::size_t threads, bool fusion) {
    const std::size_t before = sft::get_num_threads();
    sft::set_num_threads(threads);
    sft::Rng rng(31);
    nn::Sequential<float> m;
    m.add("fc1", nn::Linear<float>(40, 700, true, rng));
    m.add("act1", nn::ReLU<float>());
    m.add("norm", nn::LayerNorm<float>(700));
    m.add("fc2", nn::Linear<float>(700, 300, true, rng));
    m.add("act2", nn::GELU<float>());
    m.add("drop", nn::Dropout<float>(0.2, 5));
    m.add("fc3", nn::Linear<float>(300, 12, true, rng));
    m.set_fusion(fusion);
    Tensor<float> x = Tensor<float>::empty({4000, 40});  // 4000 x 12 logits: the loss rows are threaded too
    for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
    Tensor<std::int64_t> y = Tensor<std::int64_t>::empty({4000});
    for (auto& v : y) v = static_cast<std::int64_t>(rng.randint(12));
    sft::loss::CrossEntropy<float> ce(sft::loss::CrossEntropyOptions().label_smoothing(0.1));
    StepResult r;
    r.logits = m.forward(x).clone();
    r.loss = ce.forward(r.logits, y);
    r.dx = m.backward(ce.backward()).clone();
    for (auto* p : m.parameters()) r.grads.push_back(p->grad().clone());
    sft::set_num_threads(before);
    return r;
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("Threads: a training step gives the same bits at 1 and 2 threads", "[nn][threads]") {
    for (bool fusion : {true, false}) {
        INFO("fusion " << fusion);
        const StepResult one = run_step(1, fusion), two = run_step(2, fusion);
        CHECK(same_bits(one.logits, two.logits));
        CHECK(std::memcmp(&one.loss, &two.loss, sizeof(float)) == 0);
        CHECK(same_bits(one.dx, two.dx));
        REQUIRE(one.grads.size() == two.grads.size());
        for (std::size_t i = 0; i < one.grads.size(); ++i) {
            INFO("parameter " << i);
            CHECK(same_bits(one.grads[i], two.grads[i]));
        }
    }
}
