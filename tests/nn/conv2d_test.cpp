#include <sft/io/safetensors.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

using sft::Shape;
using sft::Tensor;
using sft::nn::Conv2d;
using sft::nn::Conv2dOptions;

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

TEST_CASE("Conv2d: parameter shapes, names and PyTorch's default init", "[nn][conv2d]") {
    sft::Rng rng(7);
    Conv2d<float> conv(Conv2dOptions(3, 8, {3, 5}).stride(2).padding({1, 2}), rng);
    CHECK(conv.weight().value().shape() == Shape{8, 3, 3, 5});
    REQUIRE(conv.bias() != nullptr);
    CHECK(conv.bias()->value().shape() == Shape{8});
    // kaiming_uniform_(a = sqrt(5)): bound 1/sqrt(fan_in), fan_in = 3 * 3 * 5; the bias uses the same bound.
    const float bound = 1.0f / std::sqrt(45.0f);
    float wmax = 0, bmax = 0;
    for (float v : conv.weight().value()) wmax = std::max(wmax, std::abs(v));
    for (float v : conv.bias()->value()) bmax = std::max(bmax, std::abs(v));
    CHECK(wmax <= bound);
    CHECK(wmax > 0.8f * bound);  // 360 uniform draws reach near the bound
    CHECK(bmax <= bound);
    auto sd = conv.state_dict();
    CHECK(sd.size() == 2);
    CHECK(sd.count("weight") == 1);
    CHECK(sd.count("bias") == 1);

    Conv2d<float> nobias(2, 4, 3, 1, 0, /*bias=*/false);
    CHECK(nobias.bias() == nullptr);
    CHECK(nobias.state_dict().size() == 1);
    CHECK(nobias.forward(Tensor<float>({1, 2, 5, 6})).shape() == Shape{1, 4, 3, 4});
}

TEST_CASE("Conv2d: output size floor((H + 2p - k) / s) + 1", "[nn][conv2d]") {
    Conv2d<float> conv(Conv2dOptions(1, 2, 3).stride(2).padding(1));
    CHECK(conv.forward(Tensor<float>({3, 1, 28, 28})).shape() == Shape{3, 2, 14, 14});
    CHECK(conv.forward(Tensor<float>({1, 1, 7, 4})).shape() == Shape{1, 2, 4, 2});
    Conv2d<float> rect(Conv2dOptions(1, 1, {1, 3}).stride({2, 1}));
    CHECK(rect.forward(Tensor<float>({1, 1, 5, 5})).shape() == Shape{1, 1, 3, 3});
}

TEST_CASE("Conv2d: errors name the layer and the shapes", "[nn][conv2d]") {
    sft::nn::Sequential<float> model;
    model.add("conv1", Conv2d<float>(1, 4, 3));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({8, 3, 28, 28})),
                      Catch::Contains("Conv2d 'conv1': input [8, 3, 28, 28], expected [N, 1, H, W]"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({3, 28, 28})), Catch::Contains("Conv2d 'conv1': input [3, 28, 28]"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({1, 1, 2, 9})), Catch::Contains("Conv2d 'conv1'") && Catch::Contains("[1, 1, 2, 9]") &&
                                                                       Catch::Contains("smaller than the kernel 3"));
    CHECK_THROWS_AS(Conv2d<float>(0, 4, 3), sft::Error);
    CHECK_THROWS_WITH(Conv2d<float>(Conv2dOptions(1, 4, 3).stride(0)), Catch::Contains("stride=0"));

    Conv2d<float> fresh(1, 2, 3);
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({1, 2, 1, 1})), Catch::Contains("Conv2d") && Catch::Contains("before forward"));
    fresh.forward(Tensor<float>({1, 1, 4, 4}));
    try {
        fresh.backward(Tensor<float>({1, 2, 3, 3}));
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::shape);
        CHECK_THAT(e.what(), Catch::Contains("grad_output [1, 2, 3, 3], expected [1, 2, 2, 2]"));
    }
}

TEST_CASE("Conv2d: finite-difference gradients in double", "[nn][conv2d][gradcheck]") {
    struct Case {
        const char* what;
        Conv2dOptions opt;
        Shape input;
    };
    const Case cases[] = {
        {"3x3 stride 1 no padding", Conv2dOptions(2, 3, 3), {2, 2, 5, 6}},
        {"3x3 stride 2 padding 1", Conv2dOptions(3, 4, 3).stride(2).padding(1), {2, 3, 7, 6}},
        {"(3, 2) stride (1, 2) padding (0, 1) no bias", Conv2dOptions(2, 3, {3, 2}).stride({1, 2}).padding({0, 1}).bias(false), {2, 2, 6, 7}},
        {"1x1 pointwise", Conv2dOptions(4, 3, 1), {2, 4, 3, 3}},
        {"1x1 stride 2", Conv2dOptions(2, 2, 1).stride(2), {1, 2, 5, 5}},
        {"5x5 padding 2 on a 3x4 image", Conv2dOptions(1, 2, 5).padding(2), {2, 1, 3, 4}},
        {"2x2 stride 2 padding 3: windows entirely in the padding", Conv2dOptions(2, 2, 2).stride(2).padding(3), {1, 2, 3, 3}},
    };
    for (const auto& c : cases) {
        SECTION(c.what) {
            sft::Rng rng(11);
            Conv2d<double> conv(c.opt, rng);
            const Tensor<double> x = sft::testing::random_tensor(c.input, 5);
            sft::testing::check_input_grad(conv, x, 1e-7);
            sft::testing::check_param_grads(conv, x, 1e-7);
        }
    }
}

TEST_CASE("Conv2d: gradients accumulate, frozen weight and need_input_grad false", "[nn][conv2d]") {
    sft::Rng rng(3);
    Conv2d<double> conv(Conv2dOptions(2, 3, 3).padding(1), rng);
    const Tensor<double> x = sft::testing::random_tensor({2, 2, 4, 4}, 8);
    const Tensor<double> g = sft::testing::random_tensor({2, 3, 4, 4}, 9);
    conv.forward(x);
    Tensor<double> dx = conv.backward(g);
    const Tensor<double> once = conv.weight().grad().clone();
    const Tensor<double> bias_once = conv.bias()->grad().clone();
    Tensor<double> none = conv.backward(g, /*need_input_grad=*/false);
    CHECK_FALSE(none.defined());
    for (std::size_t i = 0; i < once.numel(); ++i) CHECK(conv.weight().grad()[i] == Approx(2 * once[i]));

    conv.weight().requires_grad_(false);
    conv.weight().grad().zero_();
    conv.bias()->grad().zero_();
    Tensor<double> dx2 = conv.backward(g);
    for (double v : conv.weight().grad()) CHECK(v == 0.0);
    for (std::size_t i = 0; i < bias_once.numel(); ++i) CHECK(conv.bias()->grad()[i] == Approx(bias_once[i]));
    for (std::size_t i = 0; i < dx.numel(); ++i) CHECK(dx2[i] == dx[i]);
}

TEST_CASE("Conv2d: matches PyTorch (float32 fixtures)", "[nn][conv2d][reference]") {
    const Fixture f = load_fixture("layers_conv2d.safetensors");
    struct Case {
        const char* name;
        Conv2dOptions opt;
    };
    const Case cases[] = {
        {"s2p1", Conv2dOptions(3, 4, 3).stride(2).padding(1)},
        {"nobias", Conv2dOptions(2, 3, {3, 2}).stride({1, 2}).padding({0, 1}).bias(false)},
        {"pw", Conv2dOptions(4, 5, 1)},
        {"k5p2", Conv2dOptions(3, 2, 5).padding(2)},
    };
    for (const auto& c : cases) {
        SECTION(c.name) {
            const std::string p = std::string(c.name) + ".";
            Conv2d<float> conv(c.opt);
            std::map<std::string, Tensor<float>> state{{"weight", at(f, p + "weight")}};
            if (c.opt.bias()) state.emplace("bias", at(f, p + "bias"));
            conv.load_state_dict(state);
            const Tensor<float> y = conv.forward(at(f, p + "x"));
            const Tensor<float> dx = conv.backward(at(f, p + "gy"));
            CHECK(max_err(y, at(f, p + "y")) <= 2e-6);
            CHECK(max_err(dx, at(f, p + "dx")) <= 2e-6);
            CHECK(max_err(conv.weight().grad(), at(f, p + "dweight")) <= 2e-6);
            if (c.opt.bias()) CHECK(max_err(conv.bias()->grad(), at(f, p + "dbias")) <= 2e-6);
        }
    }
}
