#include <sft/io/safetensors.hpp>
#include <sft/nn/pool.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

using sft::Shape;
using sft::Tensor;
using sft::nn::AvgPool2d;
using sft::nn::AvgPool2dOptions;
using sft::nn::MaxPool2d;
using sft::nn::MaxPool2dOptions;

namespace {
using Fixture = std::map<std::string, Tensor<float>>;

Fixture load_fixture(const std::string& file) { return sft::io::load_safetensors<float>(std::string(SFT_REFERENCE_DIR) + "/" + file); }

const Tensor<float>& at(const Fixture& f, const std::string& key) {
    auto it = f.find(key);
    if (it == f.end()) FAIL("fixture has no tensor '" << key << "'");
    return it->second;
}

// max |a - b| / max(1, |b|) over the elements; the shapes must agree.
double max_err(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
    return m;
}
}  // namespace

TEST_CASE("MaxPool2d: values, argmax routing, default stride", "[nn][pool]") {
    // One 4x4 plane, 2x2 windows with stride 2 (the default: the kernel size).
    Tensor<float> x({1, 1, 4, 4}, {1, 5, 2, 0,  //
                                   3, 4, 8, 1,  //
                                   0, 0, 7, 7,  //
                                   -1, 2, 7, 6});
    MaxPool2d<float> pool(2);
    CHECK(pool.options().stride().h == 2);
    Tensor<float> y = pool.forward(x);
    REQUIRE(y.shape() == Shape{1, 1, 2, 2});
    CHECK(std::vector<float>(y.begin(), y.end()) == std::vector<float>{5, 8, 2, 7});
    Tensor<float> dx = pool.backward(Tensor<float>({1, 1, 2, 2}, {1, 2, 3, 4}));
    // The tie of 7s in the last window: the first in row-major order wins, as PyTorch's CPU kernel.
    CHECK(std::vector<float>(dx.begin(), dx.end()) == std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 3, 0, 0});
    CHECK_FALSE(pool.backward(Tensor<float>({1, 1, 2, 2}), false).defined());

    // Padding never wins: an all-negative input with padding 1 keeps its own maximum.
    MaxPool2d<float> padded(MaxPool2dOptions(3).stride(2).padding(1));
    Tensor<float> neg({1, 1, 3, 3}, -5.0f);
    neg(0, 0, 1, 1) = -1.0f;
    Tensor<float> yn = padded.forward(neg);
    REQUIRE(yn.shape() == Shape{1, 1, 2, 2});
    for (float v : yn) CHECK(v == -1.0f);
}

TEST_CASE("AvgPool2d: count_include_pad decides the divisor at the border", "[nn][pool]") {
    Tensor<float> x({1, 1, 2, 2}, {1, 2, 3, 4});
    AvgPool2d<float> incl(AvgPool2dOptions(2).stride(1).padding(1));
    AvgPool2d<float> excl(AvgPool2dOptions(2).stride(1).padding(1).count_include_pad(false));
    Tensor<float> yi = incl.forward(x), ye = excl.forward(x);
    REQUIRE(yi.shape() == Shape{1, 1, 3, 3});
    CHECK(yi(0, 0, 0, 0) == Approx(0.25f));  // one real element over 4
    CHECK(ye(0, 0, 0, 0) == Approx(1.0f));   // one real element over 1
    CHECK(yi(0, 0, 1, 1) == Approx(2.5f));
    CHECK(ye(0, 0, 0, 1) == Approx(1.5f));
    Tensor<float> dx = excl.backward(Tensor<float>({1, 1, 3, 3}, 1.0f));
    // Element (0, 0) is in 4 windows of 1, 2, 2 and 4 real elements: 1 + 1/2 + 1/2 + 1/4.
    CHECK(dx(0, 0, 0, 0) == Approx(2.25f));
}

TEST_CASE("Pooling: errors name the layer and the shapes", "[nn][pool]") {
    sft::nn::Sequential<float> model;
    model.add("pool1", MaxPool2d<float>(3));
    model.add("pool2", AvgPool2d<float>(2));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({3, 8, 8})), Catch::Contains("MaxPool2d 'pool1': input [3, 8, 8], expected [N, C, H, W]"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({1, 1, 2, 8})),
                      Catch::Contains("MaxPool2d 'pool1'") && Catch::Contains("[1, 1, 2, 8]") && Catch::Contains("smaller than the kernel"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({1, 1, 3, 3})), Catch::Contains("AvgPool2d 'pool2': input [1, 1, 1, 1]"));
    CHECK_THROWS_WITH(MaxPool2d<float>(MaxPool2dOptions(2).padding(2)), Catch::Contains("MaxPool2d(kernel_size=2, stride=2, padding=2)"));
    CHECK_THROWS_WITH(AvgPool2d<float>(AvgPool2dOptions({2, 3}).stride(0)), Catch::Contains("AvgPool2d(kernel_size=(2, 3), stride=0"));
    MaxPool2d<float> fresh(2);
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({1, 1, 1, 1})), Catch::Contains("before forward"));
    fresh.forward(Tensor<float>({1, 2, 4, 4}));
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({1, 2, 4, 4})), Catch::Contains("grad_output [1, 2, 4, 4], expected [1, 2, 2, 2]"));
}

TEST_CASE("Pooling: finite-difference gradients in double", "[nn][pool][gradcheck]") {
    // Uniform random values are distinct, and more than eps apart: the argmax does not flip.
    SECTION("MaxPool2d 3 stride 2 padding 1") {
        MaxPool2d<double> pool(MaxPool2dOptions(3).stride(2).padding(1));
        sft::testing::check_input_grad(pool, sft::testing::random_tensor({2, 3, 7, 8}, 1), 1e-7);
    }
    SECTION("MaxPool2d (2, 3) stride (1, 2)") {
        MaxPool2d<double> pool(MaxPool2dOptions({2, 3}).stride({1, 2}));
        sft::testing::check_input_grad(pool, sft::testing::random_tensor({1, 2, 5, 7}, 2), 1e-7);
    }
    SECTION("AvgPool2d 3 stride 2 padding 1, count_include_pad") {
        AvgPool2d<double> pool(AvgPool2dOptions(3).stride(2).padding(1));
        sft::testing::check_input_grad(pool, sft::testing::random_tensor({2, 3, 7, 8}, 3), 1e-7);
    }
    SECTION("AvgPool2d 3 stride 2 padding 1, not count_include_pad") {
        AvgPool2d<double> pool(AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(false));
        sft::testing::check_input_grad(pool, sft::testing::random_tensor({2, 3, 7, 8}, 4), 1e-7);
    }
    SECTION("AvgPool2d (2, 3) stride (1, 2)") {
        AvgPool2d<double> pool(AvgPool2dOptions({2, 3}).stride({1, 2}));
        sft::testing::check_input_grad(pool, sft::testing::random_tensor({1, 2, 5, 7}, 5), 1e-7);
    }
}

TEST_CASE("Pooling: matches PyTorch (float32 fixtures)", "[nn][pool][reference]") {
    const Fixture f = load_fixture("layers_pool.safetensors");
    auto check = [&](sft::nn::Module<float>& pool, const std::string& name) {
        INFO(name);
        const Tensor<float> y = pool.forward(at(f, name + ".x"));
        const Tensor<float> dx = pool.backward(at(f, name + ".gy"));
        CHECK(max_err(y, at(f, name + ".y")) <= 1e-6);
        CHECK(max_err(dx, at(f, name + ".dx")) <= 1e-6);
    };
    MaxPool2d<float> max_k3s2p1(MaxPool2dOptions(3).stride(2).padding(1));
    check(max_k3s2p1, "max_k3s2p1");
    MaxPool2d<float> max_k2(2);
    check(max_k2, "max_k2");
    MaxPool2d<float> max_ties(MaxPool2dOptions(2).stride(1));
    check(max_ties, "max_ties");
    AvgPool2d<float> avg_incl(AvgPool2dOptions(3).stride(2).padding(1));
    check(avg_incl, "avg_k3s2p1_incl");
    AvgPool2d<float> avg_excl(AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(false));
    check(avg_excl, "avg_k3s2p1_excl");
    AvgPool2d<float> avg_rect(AvgPool2dOptions({2, 3}).stride({1, 2}));
    check(avg_rect, "avg_k23s12");
}
