#include <sft/io/safetensors.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/flatten.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
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
    Tensor<double> dx = conv.backward(g).clone();
    const Tensor<double> once = conv.weight().grad().clone();
    const Tensor<double> bias_once = conv.bias()->grad().clone();
    // backward() released the saved input: a second one needs a new forward().
    CHECK_THROWS_AS(conv.backward(g), sft::Error);
    conv.forward(x);
    Tensor<double> none = conv.backward(g, /*need_input_grad=*/false);
    CHECK_FALSE(none.defined());
    for (std::size_t i = 0; i < once.numel(); ++i) CHECK(conv.weight().grad()[i] == Approx(2 * once[i]));

    conv.weight().requires_grad_(false);
    conv.weight().grad().zero_();
    conv.bias()->grad().zero_();
    conv.forward(x);
    Tensor<double> dx2 = conv.backward(g);
    for (double v : conv.weight().grad()) CHECK(v == 0.0);
    for (std::size_t i = 0; i < bias_once.numel(); ++i) CHECK(conv.bias()->grad()[i] == Approx(bias_once[i]));
    for (std::size_t i = 0; i < dx.numel(); ++i) CHECK(dx2[i] == dx[i]);
}

namespace {
// Restores the thread count a test changed.
struct ThreadCountGuard {
    std::size_t saved = sft::get_num_threads();
    ~ThreadCountGuard() { sft::set_num_threads(saved); }
};

struct ConvRun {
    Tensor<float> y, dx, dw, db;
};

ConvRun run_conv(const Conv2dOptions& opt, const Tensor<float>& x, const Tensor<float>& gy) {
    sft::Rng rng(5);
    Conv2d<float> conv(opt, rng);
    ConvRun r;
    r.y = conv.forward(x).clone();
    r.dx = conv.backward(gy).clone();
    r.dw = conv.weight().grad().clone();
    if (conv.bias()) r.db = conv.bias()->grad().clone();
    return r;
}
}  // namespace

TEST_CASE("Conv2d: a batch cut into tasks of several samples equals the samples one by one, and 1 and 2 threads bit-identical",
          "[nn][conv2d]") {
    ThreadCountGuard guard;
    struct Case {
        const char* what;
        Conv2dOptions opt;
        Shape input;
    };
    // 8x8 images give 36 to 64 output positions: tasks of 8 to 15 samples, several tasks per batch.
    const Case cases[] = {
        {"3x3 no padding, 37 samples", Conv2dOptions(3, 5, 3), {37, 3, 8, 8}},
        {"3x3 stride 2 padding 1, 50 samples", Conv2dOptions(2, 4, 3).stride(2).padding(1), {50, 2, 8, 8}},
        {"1x1 no bias, 40 samples", Conv2dOptions(4, 3, 1).bias(false), {40, 4, 6, 6}},
        {"1 -> 32 channels 3x3 (the example's conv1), 20 samples", Conv2dOptions(1, 32, 3), {20, 1, 12, 12}},
    };
    for (const auto& c : cases) {
        SECTION(c.what) {
            const Tensor<double> xd = sft::testing::random_tensor(c.input, 21);
            const Tensor<float> x = xd.to<float>();
            sft::Rng rng(5);
            Conv2d<float> probe(c.opt, rng);
            const Shape out_shape = probe.forward(x).shape();
            const Tensor<float> gy = sft::testing::random_tensor(out_shape, 22).to<float>();

            sft::set_num_threads(1);
            const ConvRun one = run_conv(c.opt, x, gy);
            sft::set_num_threads(2);
            const ConvRun two = run_conv(c.opt, x, gy);
            auto same = [](const Tensor<float>& a, const Tensor<float>& b) {
                REQUIRE(a.shape() == b.shape());
                return std::equal(a.begin(), a.end(), b.begin());
            };
            CHECK(same(one.y, two.y));
            CHECK(same(one.dx, two.dx));
            CHECK(same(one.dw, two.dw));
            if (c.opt.bias()) CHECK(same(one.db, two.db));

            // The same layer on each sample alone (one task of one sample, GEMM straight into the output).
            sft::Rng rng2(5);
            Conv2d<float> conv(c.opt, rng2);
            const std::size_t n = c.input[0], xs = x.numel() / n, ys = gy.numel() / n;
            Shape x1 = c.input, y1 = out_shape;
            x1[0] = 1;
            y1[0] = 1;
            for (std::size_t s = 0; s < n; ++s) {
                Tensor<float> xi = Tensor<float>::empty(x1), gi = Tensor<float>::empty(y1);
                std::copy_n(x.data() + s * xs, xs, xi.data());
                std::copy_n(gy.data() + s * ys, ys, gi.data());
                const Tensor<float> yi = conv.forward(xi);
                const Tensor<float> dxi = conv.backward(gi);
                for (std::size_t i = 0; i < ys; ++i) REQUIRE(yi[i] == Approx(one.y[s * ys + i]).margin(1e-5));
                for (std::size_t i = 0; i < xs; ++i) REQUIRE(dxi[i] == Approx(one.dx[s * xs + i]).margin(1e-5));
            }
            for (std::size_t i = 0; i < one.dw.numel(); ++i) CHECK(conv.weight().grad()[i] == Approx(one.dw[i]).epsilon(1e-4).margin(1e-4));
            if (c.opt.bias())
                for (std::size_t i = 0; i < one.db.numel(); ++i) CHECK(conv.bias()->grad()[i] == Approx(one.db[i]).epsilon(1e-4).margin(1e-4));
        }
    }
}

TEST_CASE("Conv2d: reuses its output and input gradient only when the caller dropped them", "[nn][conv2d]") {
    sft::Rng rng(9);
    Conv2d<float> conv(Conv2dOptions(2, 3, 3), rng);
    const Tensor<float> x = sft::testing::random_tensor({4, 2, 6, 6}, 1).to<float>();
    const Tensor<float> gy = sft::testing::random_tensor({4, 3, 4, 4}, 2).to<float>();
    const float* y_storage = nullptr;
    const float* dx_storage = nullptr;
    {
        const Tensor<float> y = conv.forward(x);
        const Tensor<float> dx = conv.backward(gy);
        y_storage = y.data();
        dx_storage = dx.data();
    }
    // Dropped by the caller: the next step writes into the same storage.
    Tensor<float> y2 = conv.forward(x);
    Tensor<float> dx2 = conv.backward(gy);
    CHECK(y2.data() == y_storage);
    CHECK(dx2.data() == dx_storage);
    // Kept by the caller: the next step writes elsewhere and leaves them alone.
    const Tensor<float> y_kept = y2.clone(), dx_kept = dx2.clone();
    const Tensor<float> y3 = conv.forward(sft::testing::random_tensor({4, 2, 6, 6}, 3).to<float>());
    const Tensor<float> dx3 = conv.backward(gy);
    CHECK(y3.data() != y2.data());
    CHECK(dx3.data() != dx2.data());
    CHECK(std::equal(y2.begin(), y2.end(), y_kept.begin()));
    CHECK(std::equal(dx2.begin(), dx2.end(), dx_kept.begin()));
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

namespace {

/// conv(2 -> 5, 3x3) [+ bias], ReLU, Flatten, Linear(5 * oh * ow, 3), with fusion on or off.
sft::nn::Sequential<float> conv_relu_net(std::size_t hw, bool bias, bool fusion) {
    sft::Rng rng(41);
    sft::nn::Sequential<float> m;
    m.add("conv", Conv2d<float>(2, 5, 3, 1, 0, bias, rng));
    m.add("relu", sft::nn::ReLU<float>());
    m.add("flat", sft::nn::Flatten<float>());
    m.add("fc", sft::nn::Linear<float>(5 * (hw - 2) * (hw - 2), 3, true, rng));
    m.set_fusion(fusion);
    return m;
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("Sequential fuses Conv2d + ReLU: outputs, input gradient and parameter gradients bit-identical to the unfused layers",
          "[nn][conv2d][fusion]") {
    // 6 x 6 images: tasks of several samples (a GEMM into scratch, then the bias pass); 26 x 26:
    // one sample per task (the GEMM writes the output, then the bias pass in place).
    for (std::size_t hw : {6u, 26u})
        for (bool bias : {true, false})
            for (std::size_t threads : {1u, 2u}) {
                INFO("hw " << hw << " bias " << bias << " threads " << threads);
                sft::set_num_threads(threads);
                auto fused = conv_relu_net(hw, bias, true), plain = conv_relu_net(hw, bias, false);
                sft::Rng rng(7);
                Tensor<float> x = Tensor<float>::empty({9, 2, hw, hw});
                for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
                const Tensor<float> yf = fused.forward(x).clone(), yp = plain.forward(x).clone();
                CHECK(same_bits(yf, yp));
                Tensor<float> gy = Tensor<float>::empty({9, 3});
                for (auto& v : gy) v = static_cast<float>(rng.uniform(-1, 1));
                const Tensor<float> dxf = fused.backward(gy).clone();
                CHECK_THROWS_AS(fused.backward(gy), sft::Error);  // the ReLU's saved output was released
                plain.forward(x);
                const Tensor<float> dxp = plain.backward(gy).clone();
                CHECK(same_bits(dxf, dxp));
                // Without the input gradient (the conv is the lowest trainable layer): the same
                // parameter gradients again, added once more to both.
                fused.forward(x);
                CHECK_FALSE(fused.backward(gy, false).defined());
                plain.forward(x);
                plain.backward(gy, false);
                const auto pf = fused.parameters(), pp = plain.parameters();
                REQUIRE(pf.size() == pp.size());
                for (std::size_t i = 0; i < pf.size(); ++i) {
                    INFO(pf[i]->name());
                    CHECK(same_bits(pf[i]->grad(), pp[i]->grad()));
                }
                // The case has negative pre-activations for the fused pass to cut to zero.
                const Tensor<float> conv_out = static_cast<Conv2d<float>&>(plain[0]).forward(x);
                std::size_t negatives = 0;
                for (float v : conv_out) negatives += v < 0;
                CHECK(negatives > 0);
            }
    sft::set_num_threads(sft::detail::hardware_threads());
}

TEST_CASE("Fused Conv2d + ReLU passes a NaN through as the ReLU does", "[nn][conv2d][fusion]") {
    Tensor<float> x = Tensor<float>::empty({2, 2, 6, 6});
    for (std::size_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) * 0.1f - 0.3f;
    x[5] = std::numeric_limits<float>::quiet_NaN();
    Tensor<float> out[2];
    for (bool fusion : {true, false}) {
        sft::Rng rng(3);
        sft::nn::Sequential<float> m;
        m.add("conv", Conv2d<float>(2, 4, 3, 1, 0, true, rng));
        m.add("relu", sft::nn::ReLU<float>());
        m.set_fusion(fusion);
        out[fusion] = m.forward(x).clone();
    }
    std::size_t nans = 0, zeros = 0;
    for (float v : out[1]) {
        nans += std::isnan(v);
        zeros += v == 0.0f;
    }
    CHECK(nans > 0);
    CHECK(zeros > 0);
    CHECK(same_bits(out[1], out[0]));
}
