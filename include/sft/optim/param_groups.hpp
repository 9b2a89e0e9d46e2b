/// @file param_groups.hpp
/// sft::optim::ParamGroup (parameters with their own learning rate or weight decay, as libtorch's
/// OptimizerParamGroup and torch's param_groups) and decay_param_groups(), the decay / no-decay
/// split that Hugging Face's Trainer makes before building AdamW.
#pragma once

#include <sft/error.hpp>
#include <sft/nn/module.hpp>

#include <fmt/format.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sft::optim {

/// A set of parameters that share hyperparameters; lr and weight decay override the optimizer's
/// options when set, as a dict in torch's `params` list: {"params": [...], "lr": 1e-4}.
/// Frozen parameters (requires_grad() false) may be listed: optimizers skip them at each step.
template <class T>
class ParamGroup {
public:
    /// A group of `params` with the optimizer's default hyperparameters.
    explicit ParamGroup(std::vector<nn::Parameter<T>*> params) : params_(std::move(params)) {}

    /// Learning rate of this group. Throws sft::Error if lr is negative or NaN.
    ParamGroup& lr(double lr) {
        if (!(lr >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("ParamGroup: lr {} is invalid, expected >= 0", lr));
        lr_ = lr;
        return *this;
    }
    /// Weight decay of this group. Throws sft::Error if negative or NaN.
    ParamGroup& weight_decay(double wd) {
        if (!(wd >= 0.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("ParamGroup: weight_decay {} is invalid, expected >= 0", wd));
        weight_decay_ = wd;
        return *this;
    }

    /// The parameters of the group, in the order given.
    const std::vector<nn::Parameter<T>*>& params() const noexcept { return params_; }
    /// The lr override, if any.
    const std::optional<double>& lr() const noexcept { return lr_; }
    /// The weight decay override, if any.
    const std::optional<double>& weight_decay() const noexcept { return weight_decay_; }

private:
    std::vector<nn::Parameter<T>*> params_;
    std::optional<double> lr_;
    std::optional<double> weight_decay_;
};

/// The default no-decay rule: true for a parameter of rank <= 1 (biases, and the weights and
/// biases of LayerNorm / BatchNorm, which are rank 1) or whose name ends in "bias".
/// This is the practical rule of nanoGPT (`p.dim() < 2`); Hugging Face's Trainer excludes names
/// containing "bias" and the parameters of LayerNorm modules, which gives the same split for
/// models made of Linear, Conv2d, Embedding and LayerNorm layers (it decays BatchNorm weights,
/// this rule does not).
template <class T>
bool is_no_decay_parameter(const nn::Parameter<T>& p) {
    const std::string& n = p.name();
    const bool bias = n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0;
    return p.value().rank() <= 1 || bias;
}

/// Splits `params` into two groups, always in this order: {decay group with `weight_decay`,
/// no-decay group with weight decay 0}, as Hugging Face's Trainer.create_optimizer does.
/// `no_decay` decides which parameters go to the second group (default: is_no_decay_parameter).
/// Frozen parameters are kept in their group (the optimizer skips them while they are frozen).
/// Either group may be empty. Throws sft::Error on a null parameter or a negative weight decay.
template <class T>
std::vector<ParamGroup<T>> decay_param_groups(const std::vector<nn::Parameter<T>*>& params, double weight_decay,
                                              const std::function<bool(const nn::Parameter<T>&)>& no_decay = is_no_decay_parameter<T>) {
    std::vector<nn::Parameter<T>*> decay, plain;
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (!params[i]) throw Error(ErrorKind::invalid_argument, fmt::format("decay_param_groups: parameter {} is null", i));
        (no_decay(*params[i]) ? plain : decay).push_back(params[i]);
    }
    std::vector<ParamGroup<T>> groups;
    groups.push_back(ParamGroup<T>(std::move(decay)).weight_decay(weight_decay));
    groups.push_back(ParamGroup<T>(std::move(plain)).weight_decay(0.0));
    return groups;
}

}  // namespace sft::optim
