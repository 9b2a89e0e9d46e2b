/// @file adam_family.hpp
/// What Adam and AdamW share: the builder-style options and the optimizer around the fused
/// kernels::adam_update. They differ only in their names, the default weight decay and whether the
/// decay is decoupled (AdamW: p <- p (1 - lr wd)) or added to the gradient (Adam: g <- g + wd p).
/// Internal: namespace sft::optim::detail; users see Adam/AdamOptions and AdamW/AdamWOptions.
#pragma once

#include <sft/error.hpp>
#include <sft/kernels/adamw.hpp>
#include <sft/optim/optimizer.hpp>

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sft::optim::detail {

/// Options of Adam and AdamW, builder style as libtorch's. `Derived` gives `name` ("AdamWOptions",
/// how errors name it) and passes its default weight decay. Each setter throws sft::Error naming
/// the value when it is out of range (NaN included).
template <class Derived>
class AdamFamilyOptions {
public:
    /// Learning rate, >= 0.
    Derived& lr(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("{}: lr {} is invalid, expected >= 0", Derived::name, v));
        lr_ = v;
        return self();
    }
    /// Decay rates of the first and second moments, each in [0, 1).
    Derived& betas(double beta1, double beta2) {
        if (!(beta1 >= 0.0 && beta1 < 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: beta1 {} is invalid, expected in [0, 1)", Derived::name, beta1));
        if (!(beta2 >= 0.0 && beta2 < 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: beta2 {} is invalid, expected in [0, 1)", Derived::name, beta2));
        betas_ = {beta1, beta2};
        return self();
    }
    /// Term added to the denominator, >= 0.
    Derived& eps(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("{}: eps {} is invalid, expected >= 0", Derived::name, v));
        eps_ = v;
        return self();
    }
    /// Weight decay coefficient, >= 0 (decoupled in AdamW, L2 on the gradient in Adam).
    Derived& weight_decay(double v) {
        if (!(v >= 0.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: weight_decay {} is invalid, expected >= 0", Derived::name, v));
        weight_decay_ = v;
        return self();
    }
    /// Use the running maximum of the second moment (Reddi et al., "On the Convergence of Adam and Beyond").
    Derived& amsgrad(bool on) noexcept {
        amsgrad_ = on;
        return self();
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

protected:
    /// Throws sft::Error if lr is negative.
    AdamFamilyOptions(double lr, double default_weight_decay) : lr_(lr), weight_decay_(default_weight_decay) {
        if (!(lr >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("{}: lr {} is invalid, expected >= 0", Derived::name, lr));
    }

private:
    Derived& self() noexcept { return static_cast<Derived&>(*this); }

    double lr_;
    std::pair<double, double> betas_{0.9, 0.999};
    double eps_ = 1e-8;
    double weight_decay_;
    bool amsgrad_ = false;
};

/// The optimizer of Adam and AdamW: per parameter "exp_avg", "exp_avg_sq", "max_exp_avg_sq"
/// (amsgrad) and "step"; each step one fused pass of kernels::adam_update over all parameters.
/// `Options::optimizer_name` names it; `Decoupled` picks AdamW's decay.
template <class T, class Options, bool Decoupled>
class AdamFamily : public Optimizer<T> {
public:
    /// One group of `params` (a model's parameters(); frozen ones are skipped at each step).
    /// Throws sft::Error if params is empty or holds a null or repeated parameter.
    AdamFamily(std::vector<nn::Parameter<T>*> params, Options options = Options())
        : AdamFamily(std::vector<ParamGroup<T>>{ParamGroup<T>(std::move(params))}, options) {}

    /// A braced list of parameters, {&w, &b} (a vector of groups would also accept it).
    AdamFamily(std::initializer_list<nn::Parameter<T>*> params, Options options = Options())
        : AdamFamily(std::vector<nn::Parameter<T>*>(params), options) {}

    /// Parameter groups, each with its own lr / weight decay when set (the options give the rest).
    /// Throws sft::Error if no group has a parameter, or a parameter is null or repeated.
    AdamFamily(const std::vector<ParamGroup<T>>& groups, Options options)
        : Optimizer<T>(groups, options.lr(), options.weight_decay(), Options::optimizer_name), options_(options) {}

    std::string type_name() const override { return Options::optimizer_name; }
    /// The options it was built with (groups may override lr and weight decay).
    const Options& options() const noexcept { return options_; }

protected:
    std::vector<std::string> state_names() const override {
        if (options_.amsgrad()) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        return {"exp_avg", "exp_avg_sq"};
    }

    void update(typename Optimizer<T>::Slot& s, const typename Optimizer<T>::Group& g, bool, std::size_t b,
                std::size_t e) const noexcept override {
        // The per-tensor scalars as torch forms them in Python (double), then one fused pass over
        // elements [b, e): decay (p *= 1 - lr wd when decoupled, else g += wd p); m, v moments;
        // [v_max]; p += -lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps).
        const auto c = kernels::adam_coefficients<T>(g.lr, options_.betas().first, options_.betas().second, options_.eps(),
                                                     g.weight_decay, Decoupled, static_cast<double>(s.step));
        kernels::adam_update(s.param->value().data() + b, s.param->grad().data() + b, s.buffers[0].data() + b,
                             s.buffers[1].data() + b, options_.amsgrad() ? s.buffers[2].data() + b : nullptr, e - b, c);
    }

private:
    Options options_;
};

}  // namespace sft::optim::detail
