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

namespace {

// Sequential's row-parallel runs (each thread takes its rows through a run of row-wise layers)
// against the same layers run one by one, at 2 threads: outputs, input gradient and every
// parameter gradient, over two steps (the second reuses the kept buffers).
struct RowRunResult {
    std::vector<Tensor<float>> tensors;
    std::size_t forward_blocks = 0, backward_blocks = 0;  // of the last step
};

nn::Sequential<float> row_model(sft::Rng& rng) {
    nn::Sequential<float> m;
    m.add("fc1", nn::Linear<float>(50, 70, true, rng));  // fc1 + act1: a fused pair inside the first run
    m.add("act1", nn::ReLU<float>());
    m.add("fc2", nn::Linear<float>(70, 40, true, rng));
    m.add("gelu", nn::GELU<float>("tanh"));
    m.add("tanh", nn::Tanh<float>());
    m.add("norm", nn::LayerNorm<float>(40));  // ends the first run
    m.add("fc3", nn::Linear<float>(40, 30, false, rng));  // the second run: fc3, sigmoid, fc4, act4
    m.add("sigmoid", nn::Sigmoid<float>());
    m.add("fc4", nn::Linear<float>(30, 9, true, rng));
    m.add("act4", nn::ReLU<float>());
    return m;
}

RowRunResult row_run(bool row_parallel, const sft::Shape& in_shape, const std::string& frozen, bool need_input_grad) {
    sft::Rng rng(41);
    nn::Sequential<float> m = row_model(rng);
    m.set_row_parallel(row_parallel);
    if (!frozen.empty()) m.freeze(frozen);
    Tensor<float> x = Tensor<float>::empty(in_shape);
    for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
    sft::Shape out_shape = in_shape;
    out_shape[out_shape.rank() - 1] = 9;
    Tensor<float> g = Tensor<float>::empty(out_shape);
    for (auto& v : g) v = static_cast<float>(rng.uniform(-1, 1));
    RowRunResult r;
    for (int step = 0; step < 2; ++step) {
        r.tensors.push_back(m.forward(x).clone());
        const Tensor<float> dx = m.backward(g, need_input_grad);
        CHECK(dx.defined() == need_input_grad);
        if (dx.defined()) r.tensors.push_back(dx.clone());
        for (auto* p : m.parameters())
            if (p->requires_grad()) r.tensors.push_back(p->grad().clone());
        r.forward_blocks = m.forward_row_blocks();
        r.backward_blocks = m.backward_row_blocks();
    }
    return r;
}

}  // namespace

TEST_CASE("Row-parallel runs of Sequential give the same bits as the layers run one by one", "[nn][threads][row_parallel]") {
    const std::size_t before = sft::get_num_threads();
    for (std::size_t threads : {2u, 3u}) {
        sft::set_num_threads(threads);
        // 64 rows: two blocks of 32; 100 and 130: a short last block; rank 3 (the rows are all
        // dimensions but the last); 33 rows: too few to cut, the layers run one by one.
        for (const sft::Shape& shape : {sft::Shape{64, 50}, sft::Shape{100, 50}, sft::Shape{130, 50}, sft::Shape{5, 26, 50}, sft::Shape{33, 50}}) {
            for (const std::string& frozen : {std::string(), std::string("fc1"), std::string("fc2")}) {
                for (bool need_input_grad : {true, false}) {
                    INFO("threads " << threads << ", input " << shape.str() << ", frozen '" << frozen << "', need_input_grad " << need_input_grad);
                    const RowRunResult on = row_run(true, shape, frozen, need_input_grad), off = row_run(false, shape, frozen, need_input_grad);
                    // Blocks of 32 rows or more, at most one per thread.
                    const std::size_t rows = shape.numel() / 50;
                    const std::size_t expected = rows == 64 ? 2 : rows == 33 ? 0 : rows == 130 ? (threads == 2 ? 2 : 3) : 2;
                    CHECK(on.forward_blocks == expected);
                    CHECK(on.backward_blocks == expected);
                    CHECK(off.forward_blocks == 0);
                    CHECK(off.backward_blocks == 0);
                    REQUIRE(on.tensors.size() == off.tensors.size());
                    for (std::size_t i = 0; i < on.tensors.size(); ++i) {
                        INFO("tensor " << i);
                        CHECK(same_bits(on.tensors[i], off.tensors[i]));
                    }
                }
            }
        }
    }
    sft::set_num_threads(before);
}

TEST_CASE("Row-parallel runs throw what the layers throw, naming the layer, and keep their state rules", "[nn][threads][row_parallel]") {
    const std::size_t before = sft::get_num_threads();
    sft::set_num_threads(2);
    sft::Rng rng(42);
    Tensor<float> x = Tensor<float>::empty({128, 50});
    for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
    SECTION("an input of the wrong width") {
        nn::Sequential<float> m = row_model(rng);
        Tensor<float> bad = Tensor<float>::zeros({128, 49});
        CHECK_THROWS_WITH(m.forward(bad), Catch::Contains("Linear 'fc1'") && Catch::Contains("[128, 49]") && Catch::Contains("[*, 50]"));
    }
    SECTION("a layer inside the run that does not fit the one before it") {
        nn::Sequential<float> m;
        m.add("fc1", nn::Linear<float>(50, 70, true, rng));
        m.add("act1", nn::ReLU<float>());
        m.add("fc2", nn::Linear<float>(60, 9, true, rng));
        CHECK_THROWS_WITH(m.forward(x), Catch::Contains("Linear 'fc2'") && Catch::Contains("[128, 70]") && Catch::Contains("[*, 60]"));
    }
    SECTION("a gradient of the wrong shape, a backward without forward, a second backward") {
        nn::Sequential<float> m = row_model(rng);
        CHECK_THROWS_WITH(m.backward(Tensor<float>::zeros({128, 9})), Catch::Contains("backward() called before forward()"));
        const Tensor<float> y = m.forward(x);
        CHECK(y.shape() == sft::Shape{128, 9});
        CHECK_THROWS_WITH(m.backward(Tensor<float>::zeros({128, 8})), Catch::Contains("ReLU 'act4'") && Catch::Contains("[128, 8]"));
        m.forward(x);
        m.backward(Tensor<float>::zeros({128, 9}));
        CHECK_THROWS_WITH(m.backward(Tensor<float>::zeros({128, 9})), Catch::Contains("backward() called before forward()"));
    }
    sft::set_num_threads(before);
}
