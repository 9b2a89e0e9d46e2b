// AdamW and Adam: options, construction errors, the contract's usage on a model with a frozen
// layer, a first step checked by hand, parameters unfrozen later.
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/optim/adam.hpp>
#include <sft/optim/adamw.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using sft::Tensor;
using sft::nn::Parameter;
using sft::optim::Adam;
using sft::optim::AdamOptions;
using sft::optim::AdamW;
using sft::optim::AdamWOptions;

namespace {
sft::nn::Sequential<float> small_model() {
    sft::Rng rng(5);
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(6, 8, true, rng));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(8, 3, true, rng));
    return model;
}
}  // namespace

TEST_CASE("AdamWOptions and AdamOptions: torch's defaults, and out-of-range values throw naming them", "[optim][adamw]") {
    const AdamWOptions d;
    CHECK(d.lr() == 1e-3);
    CHECK(d.betas() == std::make_pair(0.9, 0.999));
    CHECK(d.eps() == 1e-8);
    CHECK(d.weight_decay() == 1e-2);
    CHECK_FALSE(d.amsgrad());
    CHECK(AdamOptions().weight_decay() == 0.0);
    CHECK(AdamOptions().lr() == 1e-3);
    CHECK(AdamWOptions(3e-4).betas(0.8, 0.95).eps(1e-6).weight_decay(0.1).amsgrad(true).betas().second == 0.95);

    CHECK_THROWS_WITH(AdamWOptions(-1e-3), Catch::Contains("AdamWOptions: lr -0.001"));
    CHECK_THROWS_WITH(AdamWOptions().lr(std::nan("")), Catch::Contains("lr nan"));
    CHECK_THROWS_WITH(AdamWOptions().betas(1.0, 0.999), Catch::Contains("beta1 1") && Catch::Contains("[0, 1)"));
    CHECK_THROWS_WITH(AdamWOptions().betas(0.9, -0.5), Catch::Contains("beta2 -0.5"));
    CHECK_THROWS_WITH(AdamWOptions().eps(-1e-8), Catch::Contains("eps -1e-08"));
    CHECK_THROWS_WITH(AdamWOptions().weight_decay(-0.01), Catch::Contains("weight_decay -0.01"));
    CHECK_THROWS_WITH(AdamOptions().betas(0.9, 1.0), Catch::Contains("AdamOptions: beta2 1"));
    try {
        AdamOptions(-1.0);
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::invalid_argument);
    }
}

TEST_CASE("AdamW: construction errors name the parameter", "[optim][adamw]") {
    Parameter<float> p("w", Tensor<float>({2}, 1.0f));
    CHECK_THROWS_WITH(AdamW<float>(std::vector<Parameter<float>*>{}), Catch::Contains("AdamW: got an empty parameter list"));
    CHECK_THROWS_WITH(AdamW<float>(std::vector<Parameter<float>*>{&p, nullptr}), Catch::Contains("parameter 1 of group 0 is null"));
    CHECK_THROWS_WITH(AdamW<float>(std::vector<Parameter<float>*>{&p, &p}), Catch::Contains("'w' appears more than once"));
    using Group = sft::optim::ParamGroup<float>;
    CHECK_THROWS_WITH(Adam<float>(std::vector<Group>{Group({&p}), Group({&p})}, AdamOptions()), Catch::Contains("Adam: parameter 'w'"));
    CHECK_THROWS_WITH(Group({&p}).lr(-1.0), Catch::Contains("ParamGroup: lr -1"));
    // An empty group next to a non-empty one is fine (as in torch).
    CHECK_NOTHROW(AdamW<float>(std::vector<Group>{Group({}), Group({&p})}, AdamWOptions()));
}

TEST_CASE("AdamW: the first step is p (1 - lr wd) - lr g / (|g| + eps)", "[optim][adamw]") {
    // With m = v = 0: m1 = (1 - b1) g, v1 = (1 - b2) g^2, and the bias corrections cancel them.
    Parameter<double> p("w", Tensor<double>({4}, {1.0, -2.0, 0.5, 3.0}));
    const std::vector<double> g{0.3, -0.2, 0.0, 4.0};
    for (std::size_t i = 0; i < 4; ++i) p.grad()[i] = g[i];
    AdamW<double> opt({&p}, AdamWOptions(0.1).weight_decay(0.5).eps(1e-8));
    opt.step();
    const std::vector<double> p0{1.0, -2.0, 0.5, 3.0};
    for (std::size_t i = 0; i < 4; ++i) {
        const double expected = p0[i] * (1 - 0.1 * 0.5) - 0.1 * g[i] / (std::abs(g[i]) + 1e-8);
        CHECK(p.value()[i] == Approx(expected).epsilon(1e-12));
    }
    // Adam with the same options: the decay goes into the gradient instead.
    Parameter<double> q("w", Tensor<double>({4}, {1.0, -2.0, 0.5, 3.0}));
    for (std::size_t i = 0; i < 4; ++i) q.grad()[i] = g[i];
    Adam<double> adam({&q}, AdamOptions(0.1).weight_decay(0.5).eps(1e-8));
    adam.step();
    for (std::size_t i = 0; i < 4; ++i) {
        const double gi = g[i] + 0.5 * p0[i];
        CHECK(q.value()[i] == Approx(p0[i] - 0.1 * gi / (std::abs(gi) + 1e-8)).epsilon(1e-12));
    }
}

TEST_CASE("AdamW: the contract's loop trains the trainable layer and leaves the frozen one", "[optim][adamw]") {
    auto model = small_model();
    model.freeze("fc1");
    const Tensor<float> fc1_before = model.parameters()[0]->value().clone();
    const Tensor<float> fc2_before = model.parameters()[2]->value().clone();
    Tensor<float> x({12, 6});
    Tensor<std::int64_t> y({12});
    sft::Rng rng(3);
    for (std::size_t i = 0; i < 12; ++i) {
        y[i] = static_cast<std::int64_t>(i % 3);
        for (std::size_t j = 0; j < 6; ++j) x(i, j) = static_cast<float>(rng.normal() * 0.3 + (j % 3 == i % 3 ? 1.0 : 0.0));
    }
    AdamW<float> opt(model.parameters(), AdamWOptions(5e-2).betas(0.9, 0.999).eps(1e-8).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    float first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
        opt.zero_grad();
        const float loss = criterion.forward(model.forward(x), y);
        model.backward(criterion.backward());
        opt.step();
        if (step == 0) first = loss;
        last = loss;
    }
    INFO("loss " << first << " -> " << last);
    CHECK(last < first * 0.5f);
    CHECK(opt.steps_taken() == 30);
    CHECK(opt.lr() == 5e-2);
    for (std::size_t i = 0; i < fc1_before.numel(); ++i) REQUIRE(model.parameters()[0]->value()[i] == fc1_before[i]);
    bool moved = false;
    for (std::size_t i = 0; i < fc2_before.numel(); ++i) moved = moved || model.parameters()[2]->value()[i] != fc2_before[i];
    CHECK(moved);
    const auto state = opt.state_dict();
    CHECK(state.count("fc2.weight.exp_avg") == 1);
    CHECK(state.count("fc1.weight.exp_avg") == 0);  // frozen: no state
    // zero_grad clears every gradient.
    opt.zero_grad();
    for (auto* p : model.parameters())
        for (float g : p->grad()) REQUIRE(g == 0.0f);
}

TEST_CASE("AdamW: a parameter unfrozen later starts its own step count", "[optim][adamw]") {
    Parameter<float> a("a", Tensor<float>({3}, 1.0f)), b("b", Tensor<float>({3}, 1.0f));
    b.requires_grad_(false);
    AdamW<float> opt({&a, &b}, AdamWOptions(0.1));
    for (int i = 0; i < 2; ++i) {
        a.grad().fill_(1.0f);
        opt.step();
    }
    CHECK(b.value()[0] == 1.0f);  // no update and no decay while frozen
    b.requires_grad_(true);
    a.grad().fill_(1.0f);
    b.grad().fill_(1.0f);
    opt.step();
    const auto s = opt.state_dict();
    CHECK(sft::optim::detail::decode_scalar(s.at("a.step")) == 3.0);
    CHECK(sft::optim::detail::decode_scalar(s.at("b.step")) == 1.0);
    // Its first step is a fresh Adam step: b (1 - lr wd) - lr.
    CHECK(b.value()[0] == Approx(1.0 * (1 - 0.1 * 0.01) - 0.1).epsilon(1e-6));
}

TEST_CASE("AdamW: group learning rates for schedulers", "[optim][adamw]") {
    Parameter<float> a("a", Tensor<float>({2})), b("b", Tensor<float>({2}));
    using Group = sft::optim::ParamGroup<float>;
    AdamW<float> opt(std::vector<Group>{Group({&a}), Group({&b}).lr(5e-4).weight_decay(0.0)}, AdamWOptions(1e-3));
    REQUIRE(opt.num_param_groups() == 2);
    CHECK(opt.group_lr(1) == 5e-4);
    CHECK(opt.group_weight_decay(0) == 1e-2);
    CHECK(opt.group_weight_decay(1) == 0.0);
    opt.set_group_lr(1, 1e-5);
    CHECK(opt.group_lr(1) == 1e-5);
    CHECK(opt.group_initial_lr(1) == 5e-4);
    CHECK(opt.lr() == 1e-3);
    CHECK(opt.group_params(1).size() == 1);
    sft::optim::OptimizerBase& base = opt;  // what the schedulers see
    base.set_group_lr(0, 2e-3);
    CHECK(opt.lr() == 2e-3);
}

TEST_CASE("AdamW: a parameter whose value no longer fits its gradient or state throws naming it", "[optim][adamw]") {
    Parameter<float> a("fc.weight", Tensor<float>({3}, 1.0f));
    AdamW<float> opt({&a});
    opt.step();
    a.value() = Tensor<float>({4}, 1.0f);
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("parameter 'fc.weight' has value [4], gradient [3], state [3]"));
}
