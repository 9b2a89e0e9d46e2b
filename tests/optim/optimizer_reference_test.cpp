// PyTorch parity of AdamW, Adam and SGD: 25-step trajectories of tests/reference/ref_optim.py,
// two parameter groups with their own lr / weight decay, a frozen parameter, the lr halved
// after step 12 through set_group_lr (as a scheduler does). Every step's parameters are compared.
#include <sft/io/safetensors.hpp>
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>

#include "optim/support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <type_traits>

namespace {

// Runs configuration `name` in T; returns the max abs difference to PyTorch's trajectory.
template <class T>
double max_trajectory_error(const std::map<std::string, sft::Tensor<double>>& ref, const std::string& name) {
    const auto& init = ref.at("init");
    const auto& a = ref.at("a");
    const auto& noise = ref.at("noise");
    const auto& expected = ref.at(name + (std::is_same_v<T, float> ? ".f32" : ".f64"));
    const std::size_t steps = noise.shape()[0], width = noise.shape()[1];
    REQUIRE(expected.shape() == sft::Shape{steps, width});
    optim_test::RawParams<T> raw(init);
    auto opt = optim_test::make_optimizer<T>(name, raw);
    const double initial_frozen = raw.params[1]->value()[0];
    double worst = 0.0;
    for (std::size_t t = 0; t < steps; ++t) {
        opt->zero_grad();
        raw.set_grads(a, noise.narrow(t, 1).reshape({width}));
        opt->step();
        if (t + 1 == 12)
            for (std::size_t g = 0; g < opt->num_param_groups(); ++g) opt->set_group_lr(g, opt->group_lr(g) * 0.5);
        const auto got = raw.flat();
        for (std::size_t i = 0; i < width; ++i) {
            const double err = std::abs(got[i] - expected(t, i));
            if (err > worst) worst = err;
        }
    }
    CHECK(raw.params[1]->value()[0] == initial_frozen);  // the frozen parameter never moves
    CHECK(opt->steps_taken() == steps);
    return worst;
}

}  // namespace

TEST_CASE("Optimizers follow torch.optim trajectories step by step", "[optim][pytorch]") {
    const auto ref = sft::io::load_safetensors<double>(SFT_REFERENCE_DIR "/optim_reference.safetensors");
    std::string summary;
    for (const char* name : optim_test::config_names) {
        INFO(name);
        const double e64 = max_trajectory_error<double>(ref, name);
        const double e32 = max_trajectory_error<float>(ref, name);
        // Double: the same operations as torch, so rounding only. Float: parameters are O(1) and
        // move by about lr per step; float rounding over 25 steps stays within a few 1e-7.
        CHECK(e64 < 1e-14);
        CHECK(e32 < 1e-6);
        summary += fmt::format("{} {:.2e} (double) {:.2e} (float); ", name, e64, e32);
    }
    WARN("max abs error vs PyTorch over 25 steps: " << summary);
}

TEST_CASE("A model end to end: Linear/ReLU/Linear, CrossEntropy and AdamW over decay groups match PyTorch", "[optim][pytorch]") {
    // tests/reference/ref_optim.py, _model_case: fc1.bias frozen, label smoothing 0.1, two
    // ignored targets, weights decayed and biases not, 12 steps in float32.
    const auto ref = sft::io::load_safetensors<float>(SFT_REFERENCE_DIR "/optim_model_reference.safetensors");
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(6, 8));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(8, 3));
    std::map<std::string, sft::Tensor<float>> init;
    for (const auto& kv : ref)
        if (kv.first.rfind("init.", 0) == 0) init.emplace(kv.first.substr(5), kv.second);
    model.load_state_dict(init);
    model.freeze("fc1.bias");
    const sft::Tensor<std::int64_t> targets = ref.at("y").to<std::int64_t>();
    sft::optim::AdamW<float> opt(sft::optim::decay_param_groups(model.parameters(), 0.05), sft::optim::AdamWOptions(1e-2));
    sft::loss::CrossEntropy<float> criterion(sft::loss::CrossEntropyOptions().label_smoothing(0.1));
    double loss_err = 0.0;
    for (std::size_t step = 0; step < 12; ++step) {
        opt.zero_grad();
        const float loss = criterion.forward(model.forward(ref.at("x")), targets);
        model.backward(criterion.backward());
        opt.step();
        loss_err = std::max(loss_err, std::abs(static_cast<double>(loss) - ref.at("losses")[step]));
    }
    double param_err = 0.0;
    for (const auto& kv : model.state_dict()) {
        const auto& want = ref.at("final." + kv.first);
        for (std::size_t i = 0; i < want.numel(); ++i) param_err = std::max(param_err, std::abs(double(kv.second[i]) - double(want[i])));
    }
    for (std::size_t i = 0; i < 8; ++i) CHECK(model.state_dict().at("fc1.bias")[i] == init.at("fc1.bias")[i]);
    CHECK(loss_err < 1e-5);
    CHECK(param_err < 1e-5);
    WARN("model end to end vs PyTorch over 12 steps: max loss error " << loss_err << ", max parameter error " << param_err);
}
