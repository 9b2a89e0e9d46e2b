#include <sft/io/safetensors.hpp>
#include <sft/nn/pool.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

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

namespace {
// Restores the thread count a test changed.
struct ThreadCountGuard {
    std::size_t saved = sft::get_num_threads();
    ~ThreadCountGuard() { sft::set_num_threads(saved); }
};

// The textbook max pooling of PyTorch's CPU kernel: windows clipped to the image, scanned in
// row-major order, `v > max || isnan(v)` replaces. Returns the outputs and each one's flat input index.
void reference_max_pool(const Tensor<float>& x, std::size_t k, std::size_t st, std::size_t pad, std::vector<float>& y,
                        std::vector<std::size_t>& arg) {
    const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    const std::size_t oh = (h + 2 * pad - k) / st + 1, ow = (w + 2 * pad - k) / st + 1;
    y.assign(n * c * oh * ow, 0.0f);
    arg.assign(y.size(), 0);
    std::size_t o = 0;
    for (std::size_t p = 0; p < n * c; ++p)
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox, ++o) {
                bool first = true;
                float m = 0;
                std::size_t best = 0;
                for (std::size_t ky = 0; ky < k; ++ky)
                    for (std::size_t kx = 0; kx < k; ++kx) {
                        const long iy = long(oy * st + ky) - long(pad), ix = long(ox * st + kx) - long(pad);
                        if (iy < 0 || ix < 0 || iy >= long(h) || ix >= long(w)) continue;
                        const std::size_t idx = (p * h + std::size_t(iy)) * w + std::size_t(ix);
                        const float v = x[idx];
                        if (first || v > m || std::isnan(v)) {
                            m = v;
                            best = idx;
                            first = false;
                        }
                    }
                y[o] = m;
                arg[o] = best;
            }
}
}  // namespace

TEST_CASE("MaxPool2d: ties, NaNs and odd sizes as PyTorch's CPU kernel, 2x2 fast path and general windows", "[nn][pool]") {
    struct Case {
        std::size_t k, stride, pad;
        Shape input;
    };
    // 2x2 stride 2 takes the branch-free path (odd sizes drop the last row and column); the others the general one.
    // 300 x 40 takes the 2x2 path in several blocks of output rows, 5 x 2201 in chunks of columns.
    const Case cases[] = {{2, 2, 0, {3, 4, 9, 11}}, {2, 2, 0, {2, 3, 8, 8}}, {3, 2, 1, {2, 2, 7, 9}}, {2, 1, 0, {1, 3, 5, 6}},
                          {2, 2, 0, {1, 2, 300, 40}}, {2, 2, 0, {1, 1, 5, 2201}}, {2, 2, 0, {1, 1, 4, 4400}}};
    for (const auto& c : cases) {
        INFO("kernel " << c.k << " stride " << c.stride << " padding " << c.pad << " input " << c.input.str());
        // Small integers (many ties, as after a ReLU) and a few NaNs.
        Tensor<float> x = Tensor<float>::empty(c.input);
        sft::Rng rng(17);
        for (auto& v : x) v = float(rng.randint(3));
        for (std::size_t i = 0; i < x.numel(); i += 37) x[i] = std::nanf("");
        std::vector<float> y_ref;
        std::vector<std::size_t> arg;
        reference_max_pool(x, c.k, c.stride, c.pad, y_ref, arg);
        MaxPool2d<float> pool(MaxPool2dOptions(c.k).stride(c.stride).padding(c.pad));
        const Tensor<float> y = pool.forward(x);
        REQUIRE(y.numel() == y_ref.size());
        for (std::size_t i = 0; i < y.numel(); ++i) {
            if (std::isnan(y_ref[i])) REQUIRE(std::isnan(y[i]));
            else REQUIRE(y[i] == y_ref[i]);
        }
        Tensor<float> gy = Tensor<float>::empty(y.shape());
        for (std::size_t i = 0; i < gy.numel(); ++i) gy[i] = float(i % 7 + 1);
        const Tensor<float> dx = pool.backward(gy);
        std::vector<float> dx_ref(x.numel(), 0.0f);
        for (std::size_t i = 0; i < arg.size(); ++i) dx_ref[arg[i]] += gy[i];
        for (std::size_t i = 0; i < dx.numel(); ++i) REQUIRE(dx[i] == dx_ref[i]);
    }
}

TEST_CASE("Pooling: 1 and 2 threads bit-identical, and outputs reused only when the caller dropped them", "[nn][pool]") {
    ThreadCountGuard guard;
    const Tensor<float> x = sft::testing::random_tensor({16, 8, 26, 26}, 3).to<float>();
    auto run = [&](sft::nn::Module<float>& pool) {
        const Tensor<float> y = pool.forward(x).clone();
        const Tensor<float> gy = sft::testing::random_tensor(y.shape(), 4).to<float>();
        return std::make_pair(y, pool.backward(gy).clone());
    };
    MaxPool2d<float> max_pool(2);
    AvgPool2d<float> avg_pool(AvgPool2dOptions(3).stride(2).padding(1));
    for (sft::nn::Module<float>* pool : {static_cast<sft::nn::Module<float>*>(&max_pool), static_cast<sft::nn::Module<float>*>(&avg_pool)}) {
        INFO(pool->type_name());
        sft::set_num_threads(1);
        const auto one = run(*pool);
        sft::set_num_threads(2);
        const auto two = run(*pool);
        CHECK(std::equal(one.first.begin(), one.first.end(), two.first.begin()));
        CHECK(std::equal(one.second.begin(), one.second.end(), two.second.begin()));

        const float* y_storage = nullptr;
        {
            const Tensor<float> y = pool->forward(x);
            y_storage = y.data();
        }
        const Tensor<float> y2 = pool->forward(x);
        CHECK(y2.data() == y_storage);             // dropped: reused
        const Tensor<float> y3 = pool->forward(x);
        CHECK(y3.data() != y2.data());             // kept: a fresh tensor
        CHECK(std::equal(y2.begin(), y2.end(), y3.begin()));
    }
}
