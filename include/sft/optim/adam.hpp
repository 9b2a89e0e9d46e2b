/// @file adam.hpp
/// sft::optim::Adam and AdamOptions: Adam with L2 weight decay added to the gradient, as
/// torch.optim.Adam (torch 1.13, Kingma & Ba, "Adam: A Method for Stochastic Optimization"),
/// amsgrad included. For decoupled weight decay use AdamW (optim/adamw.hpp).
#pragma once

#include <sft/error.hpp>
#include <sft/kernels/adamw.hpp>
#include <sft/optim/optimizer.hpp>

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sft::optim {

/// Hyperparameters of Adam, builder style as libtorch's torch::optim::AdamOptions; defaults as
/// torch.optim.Adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad false.
/// Each setter throws sft::Error naming the value when it is out of range (NaN included).
class AdamOptions {
public:
    /// Throws sft::Error if lr is negative.
    explicit AdamOptions(double lr = 1e-3) { this->lr(lr); }

    /// Learning rate, >= 0.
    AdamOptions& lr(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("AdamOptions: lr {} is invalid, expected >= 0", v));
        lr_ = v;
        return *this;
    }
    /// Decay rates of the first and second moments, each in [0, 1).
    AdamOptions& betas(double beta1, double beta2) {
        if (!(beta1 >= 0.0 && beta1 < 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("AdamOptions: beta1 {} is invalid, expected in [0, 1)", beta1));
        if (!(beta2 >= 0.0 && beta2 < 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("AdamOptions: beta2 {} is invalid, expected in [0, 1)", beta2));
        betas_ = {beta1, beta2};
        return *this;
    }
    /// Term added to the denominator, >= 0.
    AdamOptions& eps(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("AdamOptions: eps {} is invalid, expected >= 0", v));
        eps_ = v;
        return *this;
    }
    /// L2 penalty coefficient, >= 0: g <- g + wd p before the moments.
    AdamOptions& weight_decay(double v) {
        if (!(v >= 0.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("AdamOptions: weight_decay {} is invalid, expected >= 0", v));
        weight_decay_ = v;
        return *this;
    }
    /// Use the running maximum of the second moment (Reddi et al., "On the Convergence of Adam and Beyond").
    AdamOptions& amsgrad(bool on) noexcept {
        amsgrad_ = on;
        return *this;
    }

    /// The learning rate.
    double lr() const noexcept { return lr_; }
    /// (beta1, beta2).
    std::pair<double, double> betas() const noexcept { return betas_; }
    /// The denominator's epsilon.
    double eps() const noexcept { return eps_; }
    /// The weight decay coefficient.
    double weight_decay() const noexcept { return weight_decay_; }
    /// Whether amsgrad is on.
    bool amsgrad() const noexcept { return amsgrad_; }

private:
    double lr_ = 1e-3;
    std::pair<double, double> betas_{0.9, 0.999};
    double eps_ = 1e-8;
    double weight_decay_ = 0.0;
    bool amsgrad_ = false;
};

/// Adam, exactly as torch.optim.Adam in torch 1.13 (single-tensor path). At step t of a
/// parameter p with gradient g, in its group's lr and weight decay wd:
///   g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  [v_max <- max(v_max, v)]
///   p <- p - lr / (1 - b1^t) * m / (sqrt(v or v_max) / sqrt(1 - b2^t) + eps)
/// State per parameter: "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad) and "step".
template <class T>
class Adam : public Optimizer<T> {
public:
    /// One group of `params` (a model's parameters(); frozen ones are skipped at each step).
    /// Throws sft::Error if params is empty or holds a null or repeated parameter.
    Adam(std::vector<nn::Parameter<T>*> params, AdamOptions options = AdamOptions())
        : Adam(std::vector<ParamGroup<T>>{ParamGroup<T>(std::move(params))}, options) {}

    /// A braced list of parameters, {&w, &b} (a vector of groups would also accept it).
    Adam(std::initializer_list<nn::Parameter<T>*> params, AdamOptions options = AdamOptions())
        : Adam(std::vector<nn::Parameter<T>*>(params), options) {}

    /// Parameter groups, each with its own lr / weight decay when set (the options give the rest).
    /// Throws sft::Error if no group has a parameter, or a parameter is null or repeated.
    Adam(const std::vector<ParamGroup<T>>& groups, AdamOptions options)
        : Optimizer<T>(groups, options.lr(), options.weight_decay(), "Adam"), options_(options) {}

    std::string type_name() const override { return "Adam"; }
    /// The options it was built with (groups may override lr and weight decay).
    const AdamOptions& options() const noexcept { return options_; }

protected:
    std::vector<std::string> state_names() const override {
        if (options_.amsgrad()) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        return {"exp_avg", "exp_avg_sq"};
    }

    void update(typename Optimizer<T>::Slot& s, const typename Optimizer<T>::Group& g, bool) override {
        // The per-tensor scalars as torch forms them in Python (double), then one fused pass:
        // g += wd p; m, v moments; [v_max]; p += -lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps).
        const auto c = kernels::adam_coefficients<T>(g.lr, options_.betas().first, options_.betas().second, options_.eps(),
                                                     g.weight_decay, /*decoupled=*/false, static_cast<double>(s.step));
        Tensor<T>& p = s.param->value();
        kernels::adam_update(p.data(), s.param->grad().data(), s.buffers[0].data(), s.buffers[1].data(),
                             options_.amsgrad() ? s.buffers[2].data() : nullptr, p.numel(), c);
    }

private:
    AdamOptions options_;
};

}  // namespace sft::optim
