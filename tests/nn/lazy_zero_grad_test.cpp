// zero_grad() marks gradients zero instead of writing them (nn::Parameter::zero_grad_()): grad()
// reads zeros afterwards, Linear's backward stores its weight gradient instead of adding it to
// zeros, and training gives bit-identical results to gradients zeroed in memory.
#include <sft/nn/activation.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/parallel.hpp>
#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using sft::Shape;
using sft::Tensor;
using sft::nn::Parameter;

namespace {

Tensor<float> filled(const Shape& shape, float start, float step) {
    Tensor<float> t(shape);
    float v = start;
    for (auto& x : t) {
        x = v;
        v = v + step > 1.0f ? -1.0f : v + step;
    }
    return t;
}

bool all_zero(const Tensor<float>& t) {
    return std::all_of(t.begin(), t.end(), [](float x) { return x == 0.0f; });
}

/// Sequential Linear(13, 40), ReLU, Linear(40, 3) with fixed weights.
sft::nn::Sequential<float> model() {
    sft::nn::Sequential<float> m;
    m.add("fc1", sft::nn::Linear<float>(13, 40));
    m.add("relu", sft::nn::ReLU<float>());
    m.add("fc2", sft::nn::Linear<float>(40, 3));
    float start = -0.9f;
    for (auto* p : m.parameters()) {
        p->value() = filled(p->value().shape(), start, 0.037f);
        start += 0.11f;
    }
    return m;
}

}  // namespace

TEST_CASE("Parameter::zero_grad_ marks the gradient zero, grad() writes the zeros, grad_for_backward() asks for a store once",
          "[nn][zero_grad]") {
    Parameter<float> p("weight", filled(Shape{70000}, 0.5f, 0.001f));  // above the parallel fill's grain
    std::fill(p.grad().begin(), p.grad().end(), std::numeric_limits<float>::quiet_NaN());
    CHECK_FALSE(p.grad_zero_pending());
    p.zero_grad_();
    CHECK(p.grad_zero_pending());
    const auto target = p.grad_for_backward();
    CHECK(target.overwrite);
    CHECK(target.data == p.grad().data());
    CHECK_FALSE(p.grad_zero_pending());
    CHECK_FALSE(p.grad_for_backward().overwrite);  // a second backward adds
    CHECK(std::isnan(p.grad()[0]));                // the store was the layer's to make: nothing wrote zeros

    p.zero_grad_();
    const Parameter<float>& cp = p;
    CHECK(all_zero(cp.grad()));  // read through the const accessor: zeros written
    CHECK_FALSE(p.grad_zero_pending());
    CHECK_FALSE(p.grad_for_backward().overwrite);
}

TEST_CASE("After zero_grad(), Linear's backward stores its gradients (old NaNs gone) and a second backward adds to them",
          "[nn][zero_grad]") {
    for (std::size_t threads : {1, 2}) {
        sft::set_num_threads(threads);
        auto m = model();
        sft::optim::AdamW<float> opt(m.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
        const Tensor<float> x = filled(Shape{9, 13}, -0.7f, 0.013f), gy = filled(Shape{9, 3}, 0.3f, -0.021f);
        for (auto* p : m.parameters()) std::fill(p->grad().begin(), p->grad().end(), std::numeric_limits<float>::quiet_NaN());
        opt.zero_grad();
        for (auto* p : m.parameters()) CHECK(p->grad_zero_pending());
        m.forward(x);
        m.backward(gy);
        std::vector<std::vector<float>> once;
        for (auto* p : m.parameters()) {
            INFO(p->name());
            CHECK_FALSE(p->grad_zero_pending());
            CHECK(std::none_of(p->grad().begin(), p->grad().end(), [](float g) { return std::isnan(g); }));
            CHECK_FALSE(all_zero(p->grad()));
            once.emplace_back(p->grad().begin(), p->grad().end());
        }
        // The same gradients from memory zeroed by hand (the eager zero_grad of before).
        auto eager = model();
        for (auto* p : eager.parameters()) std::fill(p->grad().begin(), p->grad().end(), 0.0f);
        eager.forward(x);
        eager.backward(gy);
        for (std::size_t i = 0; i < once.size(); ++i) {
            const auto& g = eager.parameters()[i]->grad();
            for (std::size_t j = 0; j < g.numel(); ++j) REQUIRE(once[i][j] == g[j]);
        }
        // Accumulation: a second forward/backward adds the same gradient again (the bias sums
        // its rows into the gradient one by one: equal up to rounding).
        m.forward(x);
        m.backward(gy);
        for (std::size_t i = 0; i < once.size(); ++i) {
            const auto& g = m.parameters()[i]->grad();
            for (std::size_t j = 0; j < g.numel(); ++j) REQUIRE(g[j] == Approx(2.0f * once[i][j]).epsilon(1e-5).margin(1e-6));
        }
    }
    sft::set_num_threads(sft::detail::hardware_threads());
}

TEST_CASE("zero_grad() then step() without a backward: AdamW sees zero gradients (decay only), as with zeros in memory",
          "[nn][zero_grad]") {
    auto lazy = model(), eager = model();
    sft::optim::AdamW<float> opt_lazy(lazy.parameters(), sft::optim::AdamWOptions(1e-2).weight_decay(0.1));
    sft::optim::AdamW<float> opt_eager(eager.parameters(), sft::optim::AdamWOptions(1e-2).weight_decay(0.1));
    for (auto* p : lazy.parameters()) std::fill(p->grad().begin(), p->grad().end(), 5.0f);
    opt_lazy.zero_grad();
    for (auto* p : eager.parameters()) std::fill(p->grad().begin(), p->grad().end(), 0.0f);
    opt_lazy.step();
    opt_eager.step();
    for (std::size_t i = 0; i < lazy.parameters().size(); ++i) {
        const auto& a = lazy.parameters()[i]->value();
        const auto& b = eager.parameters()[i]->value();
        REQUIRE(std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0);
        CHECK(all_zero(lazy.parameters()[i]->grad()));
    }
}
