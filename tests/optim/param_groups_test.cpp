// ParamGroup and decay_param_groups: the Hugging Face decay / no-decay split and its effect.
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/optim/param_groups.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using sft::Tensor;
using sft::nn::Parameter;
using sft::optim::ParamGroup;

namespace {
std::vector<std::string> names(const ParamGroup<float>& g) {
    std::vector<std::string> out;
    for (auto* p : g.params()) out.push_back(p->name());
    return out;
}
}  // namespace

TEST_CASE("decay_param_groups: weights decay, biases and rank-1 (norm) parameters do not", "[optim][param_groups]") {
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(4, 3));
    model.add("fc2", sft::nn::Linear<float>(3, 2));
    model.freeze("fc1");
    auto params = model.parameters();
    // A normalisation layer's weight: rank 1, not named "bias".
    Parameter<float> ln("weight", Tensor<float>({3}, 1.0f));
    ln.set_prefix("ln");
    // A rank-2 tensor named like a bias is still a bias.
    Parameter<float> odd("pos_bias", Tensor<float>({2, 2}));
    params.push_back(&ln);
    params.push_back(&odd);

    const auto groups = sft::optim::decay_param_groups(params, 0.05);
    REQUIRE(groups.size() == 2);
    CHECK(names(groups[0]) == std::vector<std::string>{"fc1.weight", "fc2.weight"});  // frozen fc1 kept: skipped at step time
    CHECK(names(groups[1]) == std::vector<std::string>{"fc1.bias", "fc2.bias", "ln.weight", "pos_bias"});
    CHECK(groups[0].weight_decay() == 0.05);
    CHECK(groups[1].weight_decay() == 0.0);
    CHECK_FALSE(groups[0].lr().has_value());

    // A custom rule: decay everything but "ln.*".
    const auto custom = sft::optim::decay_param_groups<float>(params, 0.1, [](const Parameter<float>& p) { return p.name().rfind("ln.", 0) == 0; });
    CHECK(names(custom[1]) == std::vector<std::string>{"ln.weight"});
    CHECK_THROWS_WITH(sft::optim::decay_param_groups<float>({nullptr}, 0.1), Catch::Contains("parameter 0 is null"));
    CHECK_THROWS_WITH(sft::optim::decay_param_groups<float>(params, -0.1), Catch::Contains("weight_decay -0.1"));
}

TEST_CASE("decay_param_groups with AdamW: with zero gradients only the decay group shrinks", "[optim][param_groups]") {
    sft::nn::Sequential<float> model;
    model.add("fc", sft::nn::Linear<float>(3, 2));
    const Tensor<float> w0 = model.parameters()[0]->value().clone(), b0 = model.parameters()[1]->value().clone();
    sft::optim::AdamW<float> opt(sft::optim::decay_param_groups(model.parameters(), 0.5), sft::optim::AdamWOptions(0.1));
    CHECK(opt.group_weight_decay(0) == 0.5);
    CHECK(opt.group_weight_decay(1) == 0.0);
    opt.zero_grad();
    opt.step();  // g = 0: m = v = 0 and the Adam step is 0; only p (1 - lr wd) remains
    for (std::size_t i = 0; i < w0.numel(); ++i) CHECK(model.parameters()[0]->value()[i] == w0[i] * static_cast<float>(1 - 0.1 * 0.5));
    for (std::size_t i = 0; i < b0.numel(); ++i) CHECK(model.parameters()[1]->value()[i] == b0[i]);
}
