#include <sft/io/safetensors.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/batchnorm.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/linear.hpp>
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
using sft::nn::BatchNorm1d;
using sft::nn::BatchNorm2d;
using sft::nn::BatchNormOptions;

namespace {
using Fixture = std::map<std::string, Tensor<float>>;

Fixture load_fixture(const std::string& file) { return sft::io::load_safetensors<float>(std::string(SFT_REFERENCE_DIR) + "/" + file); }

const Tensor<float>& at(const Fixture& f, const std::string& key) {
    auto it = f.find(key);
    if (it == f.end()) FAIL("fixture has no tensor '" << key << "'");
    return it->second;
}

// max |a - b| / max(1, |b|) over the elements; the shapes must agree.
template <class T>
double max_err(const Tensor<T>& a, const Tensor<T>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
    return m;
}

// Running statistics away from (0, 1), so that eval mode visibly uses them.
template <class T>
void set_running_stats(sft::nn::detail::BatchNormBase<T>& bn, std::uint64_t seed) {
    sft::Rng rng(seed);
    for (auto& v : bn.running_mean()->value) v = static_cast<T>(rng.uniform(-1, 1));
    for (auto& v : bn.running_var()->value) v = static_cast<T>(rng.uniform(0.5, 2));
}

template <class T>
void set_affine(sft::nn::detail::BatchNormBase<T>& bn, std::uint64_t seed) {
    sft::Rng rng(seed);
    for (auto& v : bn.weight()->value()) v = static_cast<T>(rng.uniform(0.5, 1.5));
    for (auto& v : bn.bias()->value()) v = static_cast<T>(rng.uniform(-0.5, 0.5));
}
}  // namespace

TEST_CASE("BatchNorm: parameters, buffers and their PyTorch names", "[nn][batchnorm]") {
    sft::nn::Sequential<float> model;
    model.add("bn", BatchNorm2d<float>(3));
    model.add("bn1", BatchNorm1d<float>(BatchNormOptions(4).affine(false)));
    model.add("bn2", BatchNorm1d<float>(BatchNormOptions(5).track_running_stats(false)));
    auto sd = model.state_dict();
    std::vector<std::string> keys;
    for (auto& kv : sd) keys.push_back(kv.first);
    CHECK(keys == std::vector<std::string>{"bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var", "bn.weight",
                                           "bn1.num_batches_tracked", "bn1.running_mean", "bn1.running_var", "bn2.bias", "bn2.weight"});
    CHECK(sd.at("bn.num_batches_tracked").shape() == Shape{});
    CHECK(sd.at("bn.num_batches_tracked")[0] == 0.0f);
    for (float v : sd.at("bn.weight")) CHECK(v == 1.0f);
    for (float v : sd.at("bn.bias")) CHECK(v == 0.0f);
    for (float v : sd.at("bn.running_mean")) CHECK(v == 0.0f);
    for (float v : sd.at("bn.running_var")) CHECK(v == 1.0f);
    CHECK(model.parameters().size() == 4);
}

TEST_CASE("BatchNorm: errors name the layer and the shapes", "[nn][batchnorm]") {
    sft::nn::Sequential<float> model;
    model.add("bn1", BatchNorm2d<float>(16));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({8, 3, 4, 4})), Catch::Contains("BatchNorm2d 'bn1': input [8, 3, 4, 4], expected [N, 16, H, W]"));
    CHECK_THROWS_WITH(model.forward(Tensor<float>({8, 16})), Catch::Contains("BatchNorm2d 'bn1': input [8, 16]"));
    BatchNorm1d<float> bn1d(4);
    CHECK_THROWS_WITH(bn1d.forward(Tensor<float>({2, 5})), Catch::Contains("BatchNorm1d: input [2, 5], expected [N, 4] or [N, 4, L]"));
    CHECK_THROWS_WITH(bn1d.forward(Tensor<float>({2, 4, 1, 1})), Catch::Contains("[2, 4, 1, 1]"));
    // One value per channel: batch statistics are undefined in training, fine in eval.
    try {
        bn1d.forward(Tensor<float>({1, 4}));
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::invalid_argument);
        CHECK_THAT(e.what(), Catch::Contains("BatchNorm1d") && Catch::Contains("[1, 4]") && Catch::Contains("1 value per channel"));
    }
    bn1d.eval();
    CHECK(bn1d.forward(Tensor<float>({1, 4})).shape() == Shape{1, 4});
    CHECK_THROWS_WITH(BatchNorm2d<float>(0), Catch::Contains("BatchNorm2d(0"));
    CHECK_THROWS_WITH(BatchNorm2d<float>(BatchNormOptions(3).momentum(1.5)), Catch::Contains("momentum=1.5"));
    BatchNorm2d<float> fresh(2);
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({2, 2, 1, 1})), Catch::Contains("before forward"));
    fresh.forward(Tensor<float>({2, 2, 3, 3}));
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({2, 2, 3, 1})), Catch::Contains("grad_output [2, 2, 3, 1], expected [2, 2, 3, 3]"));
}

TEST_CASE("BatchNorm: training normalises each channel, running statistics as PyTorch", "[nn][batchnorm]") {
    BatchNorm1d<double> bn(2);
    // Channel 0: 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3); channel 1 constant 5.
    Tensor<double> x({4, 2}, {1, 5, 2, 5, 3, 5, 6, 5});
    Tensor<double> y = bn.forward(x);
    const double r = 1 / std::sqrt(3.5 + 1e-5);
    CHECK(y(0, 0) == Approx((1 - 3) * r));
    CHECK(y(3, 0) == Approx((6 - 3) * r));
    CHECK(y(2, 1) == 0.0);
    CHECK(bn.running_mean()->value[0] == Approx(0.1 * 3));
    CHECK(bn.running_mean()->value[1] == Approx(0.1 * 5));
    CHECK(bn.running_var()->value[0] == Approx(0.9 + 0.1 * 14.0 / 3));
    CHECK(bn.running_var()->value[1] == Approx(0.9));
    CHECK(bn.num_batches_tracked()->value[0] == 1.0);
    bn.forward(x);
    CHECK(bn.running_mean()->value[0] == Approx(0.9 * 0.3 + 0.1 * 3));
    CHECK(bn.num_batches_tracked()->value[0] == 2.0);

    // Eval mode: running statistics, nothing updated.
    bn.eval();
    Tensor<double> ye = bn.forward(x);
    CHECK(ye(0, 0) == Approx((1 - bn.running_mean()->value[0]) / std::sqrt(bn.running_var()->value[0] + 1e-5)));
    CHECK(bn.num_batches_tracked()->value[0] == 2.0);

    // momentum = nullopt: the cumulative average 1 / num_batches_tracked.
    BatchNorm1d<double> cma(BatchNormOptions(2).momentum(std::nullopt));
    cma.forward(x);
    CHECK(cma.running_mean()->value[0] == Approx(3.0));
    Tensor<double> x2({4, 2}, {0, 5, 0, 5, 0, 5, 0, 5});
    cma.forward(x2);
    CHECK(cma.running_mean()->value[0] == Approx(1.5));
    CHECK(cma.running_var()->value[0] == Approx((14.0 / 3 + 0.0) / 2));

    // track_running_stats false: batch statistics in eval mode too.
    BatchNorm1d<double> untracked(BatchNormOptions(2).track_running_stats(false));
    untracked.eval();
    CHECK(untracked.running_mean() == nullptr);
    CHECK(untracked.uses_batch_stats());
    CHECK(untracked.forward(x)(0, 0) == Approx((1 - 3) * r));

    bn.reset_running_stats();
    CHECK(bn.running_mean()->value[0] == 0.0);
    CHECK(bn.running_var()->value[0] == 1.0);
    CHECK(bn.num_batches_tracked()->value[0] == 0.0);
}

TEST_CASE("BatchNorm: finite-difference gradients in double, train and eval", "[nn][batchnorm][gradcheck]") {
    SECTION("BatchNorm2d train") {
        BatchNorm2d<double> bn(3);
        set_affine(bn, 1);
        const Tensor<double> x = sft::testing::random_tensor({3, 3, 4, 5}, 2, -1, 3);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);
    }
    SECTION("BatchNorm2d eval") {
        BatchNorm2d<double> bn(3);
        set_affine(bn, 3);
        set_running_stats(bn, 4);
        bn.eval();
        const Tensor<double> x = sft::testing::random_tensor({2, 3, 3, 4}, 5);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);
    }
    SECTION("BatchNorm1d [N, C] train") {
        BatchNorm1d<double> bn(4);
        set_affine(bn, 6);
        const Tensor<double> x = sft::testing::random_tensor({5, 4}, 7);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);
    }
    SECTION("BatchNorm1d [N, C, L] train") {
        BatchNorm1d<double> bn(3);
        set_affine(bn, 8);
        const Tensor<double> x = sft::testing::random_tensor({2, 3, 4}, 9);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);
    }
    SECTION("BatchNorm1d [N, C] eval") {
        BatchNorm1d<double> bn(4);
        set_affine(bn, 10);
        set_running_stats(bn, 11);
        bn.eval();
        const Tensor<double> x = sft::testing::random_tensor({3, 4}, 12);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);
    }
    SECTION("BatchNorm2d without affine, train and eval") {
        BatchNorm2d<double> bn(BatchNormOptions(2).affine(false));
        const Tensor<double> x = sft::testing::random_tensor({2, 2, 3, 3}, 13);
        sft::testing::check_input_grad(bn, x, 1e-7);
        set_running_stats(bn, 14);
        bn.eval();
        sft::testing::check_input_grad(bn, x, 1e-7);
    }
    SECTION("BatchNorm2d frozen in train mode") {
        BatchNorm2d<double> bn(3);
        set_affine(bn, 15);
        set_running_stats(bn, 16);
        bn.freeze();
        const Tensor<double> x = sft::testing::random_tensor({2, 3, 2, 3}, 17);
        sft::testing::check_input_grad(bn, x, 1e-7);
        sft::testing::check_param_grads(bn, x, 1e-7);  // frozen: their gradients must stay zero
    }
}

TEST_CASE("BatchNorm: a frozen BatchNorm keeps its statistics (Keras' trainable=False)", "[nn][batchnorm][freeze]") {
    sft::Rng rng(21);
    sft::nn::Sequential<double> backbone;
    backbone.add("conv", sft::nn::Conv2d<double>(2, 3, 3, 1, 1, true, rng));
    backbone.add("bn", BatchNorm2d<double>(3));
    backbone.add("relu", sft::nn::ReLU<double>());
    sft::nn::Sequential<double> model;
    model.add("backbone", std::move(backbone));
    auto& bn = static_cast<BatchNorm2d<double>&>(static_cast<sft::nn::Sequential<double>&>(model.at("backbone")).at("bn"));
    set_affine(bn, 22);
    set_running_stats(bn, 23);
    const Tensor<double> x = sft::testing::random_tensor({4, 2, 5, 5}, 24, -2, 3);

    // Eval output with the running statistics, the reference for the frozen layer.
    model.eval();
    const Tensor<double> y_eval = model.forward(x).clone();
    const Tensor<double> mean_before = bn.running_mean()->value.clone();
    const Tensor<double> var_before = bn.running_var()->value.clone();

    model.train();
    model.freeze("backbone");
    CHECK(bn.frozen());
    CHECK_FALSE(bn.uses_batch_stats());
    for (int step = 0; step < 3; ++step) {
        const Tensor<double> y = model.forward(x);
        CHECK(max_err(y, y_eval) == 0.0);
        model.backward(sft::testing::random_tensor(y.shape(), 25 + step));
    }
    CHECK(max_err(bn.running_mean()->value, mean_before) == 0.0);
    CHECK(max_err(bn.running_var()->value, var_before) == 0.0);
    CHECK(bn.num_batches_tracked()->value[0] == 0.0);

    // Only partly frozen (the bias trains): the layer is not frozen, PyTorch's behaviour is back.
    model.unfreeze("backbone.bn.bias");
    CHECK_FALSE(bn.frozen());
    const Tensor<double> y = model.forward(x);
    CHECK(max_err(y, y_eval) > 1e-3);
    CHECK(bn.num_batches_tracked()->value[0] == 1.0);
    CHECK(max_err(bn.running_mean()->value, mean_before) > 1e-3);

    // Without parameters there is nothing to freeze: batch statistics in training, as PyTorch.
    BatchNorm2d<double> plain(BatchNormOptions(3).affine(false));
    CHECK_FALSE(plain.frozen());
    CHECK(plain.uses_batch_stats());
    plain.forward(sft::testing::random_tensor({2, 3, 2, 2}, 26));
    CHECK(plain.num_batches_tracked()->value[0] == 1.0);
}

TEST_CASE("BatchNorm: matches PyTorch (float32 fixtures): 3 training steps, running stats, eval", "[nn][batchnorm][reference]") {
    const Fixture f = load_fixture("layers_batchnorm.safetensors");
    auto run = [&](sft::nn::detail::BatchNormBase<float>& bn, const std::string& name) {
        INFO(name);
        const std::string p = name + ".";
        if (bn.weight()) {
            bn.weight()->value().copy_(at(f, p + "weight"));
            bn.bias()->value().copy_(at(f, p + "bias"));
        }
        bn.train();
        Tensor<float> y;
        for (int s = 0; s < 3; ++s) {
            y = bn.forward(at(f, p + "x" + std::to_string(s)));
            CHECK(max_err(y, at(f, p + "y" + std::to_string(s))) <= 5e-6);
        }
        Tensor<float> dx = bn.backward(at(f, p + "train_gy"));
        CHECK(max_err(dx, at(f, p + "train_dx")) <= 5e-6);
        if (bn.weight()) {
            CHECK(max_err(bn.weight()->grad(), at(f, p + "train_dweight")) <= 5e-6);
            CHECK(max_err(bn.bias()->grad(), at(f, p + "train_dbias")) <= 5e-6);
        }
        CHECK(max_err(bn.running_mean()->value, at(f, p + "running_mean")) <= 2e-6);
        CHECK(max_err(bn.running_var()->value, at(f, p + "running_var")) <= 2e-6);
        CHECK(bn.num_batches_tracked()->value[0] == at(f, p + "num_batches_tracked")[0]);

        bn.eval();
        for (auto* q : bn.parameters()) q->grad().zero_();
        y = bn.forward(at(f, p + "eval_x"));
        CHECK(max_err(y, at(f, p + "eval_y")) <= 5e-6);
        dx = bn.backward(at(f, p + "eval_gy"));
        CHECK(max_err(dx, at(f, p + "eval_dx")) <= 5e-6);
        if (bn.weight()) {
            CHECK(max_err(bn.weight()->grad(), at(f, p + "eval_dweight")) <= 5e-6);
            CHECK(max_err(bn.bias()->grad(), at(f, p + "eval_dbias")) <= 5e-6);
        }
    };
    BatchNorm2d<float> bn2d(3);
    run(bn2d, "bn2d");
    BatchNorm1d<float> bn1d(4);
    run(bn1d, "bn1d");
    BatchNorm1d<float> bn1d_l(BatchNormOptions(3).momentum(std::nullopt));
    run(bn1d_l, "bn1d_l");
    BatchNorm2d<float> noaffine(BatchNormOptions(2).eps(1e-3).momentum(0.3).affine(false));
    run(noaffine, "bn2d_noaffine");
}

TEST_CASE("state_dict: a torch Sequential(conv, bn, relu, pool) loads strictly and runs as in torch", "[nn][batchnorm][state_dict][reference]") {
    sft::nn::Sequential<float> model;
    model.add("conv", sft::nn::Conv2d<float>(2, 4, 3, 1, 1));
    model.add("bn", BatchNorm2d<float>(4));
    model.add("relu", sft::nn::ReLU<float>());
    model.add("pool", sft::nn::MaxPool2d<float>(2));
    const Fixture state = load_fixture("layers_state.safetensors");
    model.load_state_dict(state);  // strict: every key and shape must match
    CHECK(model.state_dict().at("bn.num_batches_tracked")[0] == 3.0f);
    const Fixture io = load_fixture("layers_state_io.safetensors");
    model.eval();
    const Tensor<float> y = model.forward(at(io, "x"));
    CHECK(max_err(y, at(io, "y")) <= 2e-6);
}
