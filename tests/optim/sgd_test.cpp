// SGD: options and their errors, torch's first-step momentum buffer, dampening, nesterov.
#include <sft/optim/sgd.hpp>

#include <catch2/catch.hpp>

using sft::Tensor;
using sft::nn::Parameter;
using sft::optim::SGD;
using sft::optim::SGDOptions;

TEST_CASE("SGDOptions: out-of-range values and nesterov without momentum throw naming them", "[optim][sgd]") {
    Parameter<float> p("w", Tensor<float>({2}));
    CHECK_THROWS_WITH(SGDOptions(-0.1), Catch::Contains("SGDOptions: lr -0.1"));
    CHECK_THROWS_WITH(SGDOptions(0.1).momentum(-0.9), Catch::Contains("momentum -0.9"));
    CHECK_THROWS_WITH(SGDOptions(0.1).weight_decay(-1.0), Catch::Contains("weight_decay -1"));
    CHECK_THROWS_WITH(SGD<float>({&p}, SGDOptions(0.1).nesterov(true)), Catch::Contains("nesterov") && Catch::Contains("momentum 0"));
    CHECK_THROWS_WITH(SGD<float>({&p}, SGDOptions(0.1).nesterov(true).momentum(0.9).dampening(0.1)), Catch::Contains("dampening 0.1"));
    // The order of the setters does not matter: the combination is checked by the optimizer.
    CHECK_NOTHROW(SGD<float>({&p}, SGDOptions(0.1).nesterov(true).momentum(0.9)));
    const SGDOptions o = SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(1e-4).dampening(0.0);
    CHECK(o.lr() == 0.1);
    CHECK(o.momentum() == 0.9);
    CHECK(o.nesterov());
}

TEST_CASE("SGD: plain steps are p - lr (g + wd p)", "[optim][sgd]") {
    Parameter<double> p("w", Tensor<double>({3}, {1.0, 2.0, -1.0}));
    SGD<double> opt({&p}, SGDOptions(0.1).weight_decay(0.5));
    p.grad()[0] = 1.0;
    p.grad()[1] = -2.0;
    p.grad()[2] = 0.0;
    opt.step();
    CHECK(p.value()[0] == Approx(1.0 - 0.1 * (1.0 + 0.5)));
    CHECK(p.value()[1] == Approx(2.0 - 0.1 * (-2.0 + 1.0)));
    CHECK(p.value()[2] == Approx(-1.0 - 0.1 * (-0.5)));
    CHECK(opt.state_dict().count("w.momentum_buffer") == 0);  // no momentum: no state
}

TEST_CASE("SGD: the momentum buffer starts as the first gradient, then mu buf + (1 - dampening) g", "[optim][sgd]") {
    Parameter<double> p("w", Tensor<double>({1}, {0.0}));
    SGD<double> opt({&p}, SGDOptions(1.0).momentum(0.9).dampening(0.5));
    p.grad()[0] = 2.0;
    opt.step();  // buf = 2 (no dampening on the first step, as torch.clone(d_p))
    CHECK(p.value()[0] == Approx(-2.0));
    p.grad()[0] = 1.0;
    opt.step();  // buf = 0.9 * 2 + 0.5 * 1 = 2.3
    CHECK(p.value()[0] == Approx(-4.3));
    CHECK(opt.state_dict().at("w.momentum_buffer")[0] == Approx(2.3));

    Parameter<double> q("w", Tensor<double>({1}, {0.0}));
    SGD<double> nesterov({&q}, SGDOptions(1.0).momentum(0.9).nesterov(true));
    q.grad()[0] = 2.0;
    nesterov.step();  // buf = 2, d = 2 + 0.9 * 2
    CHECK(q.value()[0] == Approx(-3.8));
    q.grad()[0] = 1.0;
    nesterov.step();  // buf = 1.8 + 1 = 2.8, d = 1 + 0.9 * 2.8
    CHECK(q.value()[0] == Approx(-3.8 - 3.52));
}
