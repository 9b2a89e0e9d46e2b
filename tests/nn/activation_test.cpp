#include <sft/io/safetensors.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>

using sft::Shape;
using sft::Tensor;
using sft::nn::GELU;
using sft::nn::GELUApproximate;
using sft::nn::ReLU;
using sft::nn::Sigmoid;
using sft::nn::Tanh;

namespace {
using Fixture = std::map<std::string, Tensor<float>>;

const Fixture& fixture() {
    static const Fixture f = sft::io::load_safetensors<float>(std::string(SFT_REFERENCE_DIR) + "/activations.safetensors");
    return f;
}

const Tensor<float>& at(const std::string& key) {
    auto it = fixture().find(key);
    if (it == fixture().end()) FAIL("activations.safetensors has no tensor '" << key << "'");
    return it->second;
}

/// Largest absolute and relative (to |want|, where |want| > 1e-3) differences, and the largest
/// excess over numpy.allclose's |got - want| <= atol + rtol |want| (<= 0: all within).
struct Errors {
    double abs = 0, rel = 0, excess = -1;
};
template <class U>
Errors errors(const Tensor<float>& got, const Tensor<U>& want, double atol = 2e-6, double rtol = 2e-6) {
    REQUIRE(got.shape() == want.shape());
    Errors e;
    for (std::size_t i = 0; i < got.numel(); ++i) {
        const double d = std::abs(double(got[i]) - double(want[i]));
        e.abs = std::max(e.abs, d);
        if (std::abs(want[i]) > 1e-3) e.rel = std::max(e.rel, d / std::abs(double(want[i])));
        e.excess = std::max(e.excess, d - (atol + rtol * std::abs(double(want[i]))));
    }
    return e;
}

/// The activation evaluated in double on the float inputs: the exact side of the comparison.
Tensor<double> exact(const std::string& name, const Tensor<float>& x) {
    Tensor<double> y = Tensor<double>::empty(x.shape());
    for (std::size_t i = 0; i < x.numel(); ++i) {
        const double v = x[i];
        if (name == "relu") y[i] = v > 0 ? v : 0;
        else if (name == "gelu") y[i] = 0.5 * v * std::erfc(-v / std::sqrt(2.0));  // erfc: no cancellation
        else if (name == "gelu_tanh") y[i] = 0.5 * v * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
        else if (name == "tanh") y[i] = std::tanh(v);
        else y[i] = 1 / (1 + std::exp(-v));
    }
    return y;
}

/// The activation named as in the fixture.
std::unique_ptr<sft::nn::Module<float>> make(const std::string& name) {
    if (name == "relu") return std::make_unique<ReLU<float>>();
    if (name == "gelu") return std::make_unique<GELU<float>>();
    if (name == "gelu_tanh") return std::make_unique<GELU<float>>(GELUApproximate::tanh);
    if (name == "tanh") return std::make_unique<Tanh<float>>();
    return std::make_unique<Sigmoid<float>>();
}
}  // namespace

TEST_CASE("Activations: forward and input gradient match PyTorch (float32 fixtures)", "[nn][activation][reference]") {
    for (const std::string name : {"relu", "gelu", "gelu_tanh", "tanh", "sigmoid"}) {
        auto layer = make(name);
        const Tensor<float> y = layer->forward(at(name + ".x"));
        const Tensor<float> dx = layer->backward(at(name + ".gy"));
        const Errors ey = errors(y, at(name + ".y")), ed = errors(dx, at(name + ".dx"));
        const Tensor<double> truth = exact(name, at(name + ".x"));
        const Errors ours = errors(y, truth), theirs = errors(at(name + ".y"), truth);
        INFO(name << ": forward max abs " << ey.abs << " rel " << ey.rel << "; input gradient max abs " << ed.abs << " rel " << ed.rel
                  << "; forward against double: sft abs " << ours.abs << ", torch abs " << theirs.abs);
        // allclose(rtol = 2e-6, atol = 2e-6): float rounding of the same formulas (torch's vectorised
        // erf/exp/tanh against xsimd's or libm's). Relative errors are larger only where the value is
        // small through cancellation (gelu at x < -2: 1 + erf(x / sqrt 2)), which both sides share.
        CHECK(ey.excess <= 0);
        CHECK(ed.excess <= 0);
        CHECK(ours.abs <= 2 * theirs.abs + 1e-7);  // no less accurate than PyTorch
    }
}

TEST_CASE("Activations: finite-difference gradient checks in double", "[nn][activation][gradcheck]") {
    using sft::testing::check_input_grad;
    const Tensor<double> x = sft::testing::random_tensor({3, 5, 7}, 11, -3.0, 3.0);
    SECTION("ReLU") {
        ReLU<double> relu;
        check_input_grad(relu, sft::testing::random_tensor_away_from_zero({3, 5, 7}, 12, 1e-2, -3.0, 3.0), 1e-7);
    }
    SECTION("GELU exact") {
        GELU<double> gelu;
        check_input_grad(gelu, x, 1e-7);
    }
    SECTION("GELU tanh") {
        GELU<double> gelu("tanh");
        check_input_grad(gelu, x, 1e-7);
    }
    SECTION("Tanh") {
        Tanh<double> tanh_layer;
        check_input_grad(tanh_layer, x, 1e-7);
    }
    SECTION("Sigmoid") {
        Sigmoid<double> sigmoid;
        check_input_grad(sigmoid, x, 1e-7);
    }
}

TEST_CASE("Activations: any shape, known values, eval mode changes nothing", "[nn][activation]") {
    Tensor<float> x({2, 1, 2, 3}, {-2, -1, 0, 1, 2, 3, -0.5f, 0.5f, 10, -10, 4, -4});
    GELU<float> gelu, gelu_tanh(GELUApproximate::tanh);
    Tanh<float> tanh_layer;
    Sigmoid<float> sigmoid;
    ReLU<float> relu;
    const Tensor<float> yg = gelu.forward(x), yt = gelu_tanh.forward(x), yh = tanh_layer.forward(x), ys = sigmoid.forward(x),
                        yr = relu.forward(x);
    for (const auto* y : {&yg, &yt, &yh, &ys, &yr}) CHECK(y->shape() == x.shape());
    for (std::size_t i = 0; i < x.numel(); ++i) {
        const double v = x[i];
        INFO("x = " << v);
        CHECK(yg[i] == Approx(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))).margin(1e-6));
        CHECK(yt[i] == Approx(0.5 * v * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)))).margin(1e-6));
        CHECK(yh[i] == Approx(std::tanh(v)).margin(1e-7));
        CHECK(ys[i] == Approx(1 / (1 + std::exp(-v))).margin(1e-7));
        CHECK(yr[i] == (v > 0 ? float(v) : 0.0f));
    }
    CHECK(gelu.approximate() == GELUApproximate::none);
    CHECK(gelu_tanh.approximate() == GELUApproximate::tanh);
    gelu.eval();
    CHECK_FALSE(gelu.is_training());
    const Tensor<float> again = gelu.forward(x);
    CHECK(std::equal(again.begin(), again.end(), yg.begin()));
    // A rank-0 tensor is a valid input.
    CHECK(sigmoid.forward(Tensor<float>(Shape{}, 0.0f))[0] == 0.5f);
}

TEST_CASE("Activations: backward without need_input_grad, repeated backward, errors naming the layer", "[nn][activation]") {
    sft::nn::Sequential<float> model;
    model.add("act", GELU<float>());
    model.add("squash", Sigmoid<float>());
    auto& act = model.at("act");
    CHECK(act.label() == "GELU 'act'");
    CHECK_THROWS_WITH(act.backward(Tensor<float>({2, 3})), Catch::Contains("GELU 'act'") && Catch::Contains("before forward"));
    try {
        act.backward(Tensor<float>({2, 3}));
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::state);
    }
    const Tensor<float> x({2, 3}, {-1, 0, 1, 2, 3, 4});
    model.forward(x);
    CHECK_THROWS_WITH(act.backward(Tensor<float>({3, 2})),
                      Catch::Contains("GELU 'act'") && Catch::Contains("[3, 2]") && Catch::Contains("[2, 3]"));
    CHECK_THROWS_WITH(model.at("squash").backward(Tensor<float>()), Catch::Contains("Sigmoid 'squash'") && Catch::Contains("undefined"));
    CHECK_THROWS_WITH(act.forward(Tensor<float>()), Catch::Contains("GELU 'act'") && Catch::Contains("undefined"));
    CHECK_FALSE(act.backward(Tensor<float>({2, 3}, 1.0f), false).defined());
    // backward releases the cache, as PyTorch frees saved tensors: a second one needs a new forward.
    CHECK_THROWS_WITH(act.backward(Tensor<float>({2, 3}, 1.0f)), Catch::Contains("GELU 'act'") && Catch::Contains("before forward"));
    model.forward(x);
    const Tensor<float> g1 = act.backward(Tensor<float>({2, 3}, 1.0f));
    model.forward(x);
    const Tensor<float> g2 = act.backward(Tensor<float>({2, 3}, 1.0f));
    CHECK(std::equal(g1.begin(), g1.end(), g2.begin()));
    CHECK(g1[1] == Approx(0.5f));  // gelu'(0) = Phi(0) = 0.5
    CHECK_THROWS_WITH(GELU<float>("fast"), Catch::Contains("GELU") && Catch::Contains("'fast'") && Catch::Contains("'tanh'"));
    CHECK(GELU<double>("none").approximate() == GELUApproximate::none);
}

TEST_CASE("Activations: the forward input is not modified and outputs are fresh tensors", "[nn][activation]") {
    Tensor<float> x({40}, 0.0f);
    for (std::size_t i = 0; i < 40; ++i) x[i] = float(i) - 20.0f;
    const Tensor<float> before = x.clone();
    ReLU<float> relu;
    Tensor<float> y = relu.forward(x);
    CHECK_FALSE(y.data() == x.data());
    CHECK(std::equal(x.begin(), x.end(), before.begin()));
    const Tensor<float> dx = relu.backward(Tensor<float>({40}, 1.0f));
    for (std::size_t i = 0; i < 40; ++i) CHECK(dx[i] == (x[i] > 0 ? 1.0f : 0.0f));
}
