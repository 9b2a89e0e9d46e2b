#include <sft/io/safetensors.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <map>
#include <string>

using sft::Shape;
using sft::Tensor;
using sft::nn::Linear;

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
Errors errors(const Tensor<float>& got, const Tensor<float>& want, double atol = 2e-6, double rtol = 1e-5) {
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
}  // namespace

TEST_CASE("Linear: forward and gradients match PyTorch (float32 fixtures)", "[nn][linear][reference]") {
    for (const std::string c : {"linear", "linear3", "linear_nobias"}) {
        const bool has_bias = c != "linear_nobias";
        Linear<float> fc(13, 7, has_bias);
        std::map<std::string, Tensor<float>> state{{"weight", at(c + ".weight")}};
        if (has_bias) state.emplace("bias", at(c + ".bias"));
        fc.load_state_dict(state);
        const Tensor<float> y = fc.forward(at(c + ".x"));
        const Tensor<float> dx = fc.backward(at(c + ".gy"));
        const Errors ey = errors(y, at(c + ".y")), ed = errors(dx, at(c + ".dx")), ew = errors(fc.weight().grad(), at(c + ".dweight"));
        Errors eb;
        if (has_bias) eb = errors(fc.bias()->grad(), at(c + ".dbias"));
        INFO(c << ": y max abs " << ey.abs << " rel " << ey.rel << "; dx max abs " << ed.abs << " rel " << ed.rel << "; dweight max abs "
               << ew.abs << " rel " << ew.rel << "; dbias max abs " << eb.abs << " rel " << eb.rel);
        // allclose(rtol = 1e-5, atol = 2e-6): sums of 13 (forward), 7 (dx) and 5 or 6 (dW, db) float
        // products, rounded in another order than PyTorch's: a few ulps of the terms.
        for (const Errors* e : std::initializer_list<const Errors*>{&ey, &ed, &ew, &eb}) CHECK(e->excess <= 0);
    }
}

TEST_CASE("Linear: finite-difference gradient checks in double", "[nn][linear][gradcheck]") {
    sft::Rng rng(5);
    SECTION("with bias, rank 2") {
        Linear<double> fc(6, 5, true, rng);
        const Tensor<double> x = sft::testing::random_tensor({4, 6}, 1);
        sft::testing::check_input_grad(fc, x, 1e-7);
        sft::testing::check_param_grads(fc, x, 1e-7);
    }
    SECTION("without bias, rank 4 (leading dimensions flattened)") {
        Linear<double> fc(3, 17, false, rng);
        const Tensor<double> x = sft::testing::random_tensor({2, 2, 3, 3}, 2);
        sft::testing::check_input_grad(fc, x, 1e-7);
        sft::testing::check_param_grads(fc, x, 1e-7);
    }
    SECTION("frozen weight: only the bias gets a gradient") {
        Linear<double> fc(4, 33, true, rng);
        fc.weight().requires_grad_(false);
        sft::testing::check_param_grads(fc, sft::testing::random_tensor({5, 4}, 3), 1e-7);
    }
}

TEST_CASE("Linear: y = x W^T + b on a hand-computed example, gradients accumulate", "[nn][linear]") {
    Linear<float> fc(2, 3);
    fc.load_state_dict({{"weight", Tensor<float>({3, 2}, {1, 2, 3, 4, 5, 6})}, {"bias", Tensor<float>({3}, {0.5f, -1, 2})}});
    const Tensor<float> x({2, 2}, {1, -1, 2, 0.5f});
    const Tensor<float> y = fc.forward(x);
    REQUIRE(y.shape() == Shape{2, 3});
    CHECK(std::vector<float>(y.begin(), y.end()) == std::vector<float>{-0.5f, -2, 1, 3.5f, 7, 15});
    const Tensor<float> g({2, 3}, {1, 0, -1, 2, 1, 0});
    const Tensor<float> dx = fc.backward(g);
    // dx = g W: [1*1 + 0*3 - 1*5, 1*2 + 0*4 - 1*6] = [-4, -4]; [2*1 + 1*3, 2*2 + 1*4] = [5, 8]
    CHECK(std::vector<float>(dx.begin(), dx.end()) == std::vector<float>{-4, -4, 5, 8});
    // dW = g^T x, db = column sums of g
    const std::vector<float> dw = {1 + 4, -1 + 1, 2, 0.5f, -1, 1};
    CHECK(std::vector<float>(fc.weight().grad().begin(), fc.weight().grad().end()) == dw);
    CHECK(std::vector<float>(fc.bias()->grad().begin(), fc.bias()->grad().end()) == std::vector<float>{3, 1, -1});
    // backward released the saved input: a second one needs a new forward.
    CHECK_THROWS_WITH(fc.backward(g), Catch::Contains("Linear") && Catch::Contains("before forward"));
    fc.forward(x);
    CHECK_FALSE(fc.backward(g, false).defined());  // parameter gradients still accumulate
    CHECK(std::vector<float>(fc.bias()->grad().begin(), fc.bias()->grad().end()) == std::vector<float>{6, 2, -2});
    CHECK(fc.weight().grad()[0] == 10.0f);
}

TEST_CASE("Linear: errors name the layer and the shapes", "[nn][linear]") {
    sft::nn::Sequential<float> model;
    model.add("fc1", Linear<float>(768, 4));
    auto& fc1 = model.at("fc1");
    CHECK_THROWS_WITH(fc1.backward(Tensor<float>({32, 4})), Catch::Contains("Linear 'fc1'") && Catch::Contains("before forward"));
    CHECK_THROWS_WITH(fc1.forward(Tensor<float>({32, 512})),
                      Catch::Contains("Linear 'fc1': input [32, 512], expected [*, 768]"));
    CHECK_THROWS_WITH(fc1.forward(Tensor<float>({768})), Catch::Contains("Linear 'fc1'") && Catch::Contains("[768]"));
    CHECK_THROWS_WITH(fc1.forward(Tensor<float>()), Catch::Contains("Linear 'fc1'"));
    fc1.forward(Tensor<float>({2, 768}));
    CHECK_THROWS_WITH(fc1.backward(Tensor<float>({2, 5})), Catch::Contains("Linear 'fc1'") && Catch::Contains("[2, 5]") && Catch::Contains("[2, 4]"));
    CHECK_THROWS_WITH(Linear<float>(0, 3), Catch::Contains("Linear(0, 3)"));
    // A zero-row batch is valid: [0, 768] -> [0, 4], no gradient.
    const Tensor<float> empty_batch = fc1.forward(Tensor<float>({0, 768}));
    CHECK(empty_batch.shape() == Shape{0, 4});
}

TEST_CASE("Linear: PyTorch's initialisation bound and the state_dict names", "[nn][linear]") {
    sft::Rng rng(9);
    Linear<double> fc(100, 50, true, rng);
    const double bound = 1.0 / std::sqrt(100.0);
    double wmax = 0, bmax = 0;
    for (double v : fc.weight().value()) wmax = std::max(wmax, std::abs(v));
    for (double v : fc.bias()->value()) bmax = std::max(bmax, std::abs(v));
    CHECK(wmax <= bound);
    CHECK(wmax > 0.9 * bound);  // 5000 uniform draws reach close to the bound
    CHECK(bmax <= bound);
    const auto sd = fc.state_dict();
    CHECK(sd.size() == 2);
    CHECK(sd.at("weight").shape() == Shape{50, 100});
    CHECK(sd.at("bias").shape() == Shape{50});
    Linear<double> nobias(3, 2, false);
    CHECK(nobias.bias() == nullptr);
    CHECK(nobias.state_dict().size() == 1);
}
