/// @file sgd.hpp
/// sft::optim::SGD and SGDOptions: stochastic gradient descent with momentum, dampening, Nesterov
/// momentum and L2 weight decay, as torch.optim.SGD (torch 1.13).
#pragma once

#include <sft/error.hpp>
#include <sft/kernels/adamw.hpp>
#include <sft/optim/optimizer.hpp>

#include <fmt/format.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sft::optim {

/// Hyperparameters of SGD, builder style as libtorch's torch::optim::SGDOptions. The learning rate
/// is required (torch.optim.SGD has no default); momentum, dampening and weight_decay default to 0,
/// nesterov to false. Setters throw sft::Error naming the value when it is out of range; the
/// nesterov / momentum / dampening combination is checked when the optimizer is built.
class SGDOptions {
public:
    /// Throws sft::Error if lr is negative.
    explicit SGDOptions(double lr) { this->lr(lr); }

    /// Learning rate, >= 0.
    SGDOptions& lr(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("SGDOptions: lr {} is invalid, expected >= 0", v));
        lr_ = v;
        return *this;
    }
    /// Momentum factor, >= 0 (0: plain SGD, no momentum buffer).
    SGDOptions& momentum(double v) {
        if (!(v >= 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("SGDOptions: momentum {} is invalid, expected >= 0", v));
        momentum_ = v;
        return *this;
    }
    /// Dampening of the gradient in the momentum buffer: buf <- momentum buf + (1 - dampening) g.
    SGDOptions& dampening(double v) {
        if (!std::isfinite(v)) throw Error(ErrorKind::invalid_argument, fmt::format("SGDOptions: dampening {} is invalid, expected finite", v));
        dampening_ = v;
        return *this;
    }
    /// L2 penalty coefficient, >= 0: g <- g + wd p.
    SGDOptions& weight_decay(double v) {
        if (!(v >= 0.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("SGDOptions: weight_decay {} is invalid, expected >= 0", v));
        weight_decay_ = v;
        return *this;
    }
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    SGDOptions& nesterov(bool on) noexcept {
        nesterov_ = on;
        return *this;
    }

    /// The learning rate.
    double lr() const noexcept { return lr_; }
    /// The momentum factor.
    double momentum() const noexcept { return momentum_; }
    /// The dampening.
    double dampening() const noexcept { return dampening_; }
    /// The weight decay coefficient.
    double weight_decay() const noexcept { return weight_decay_; }
    /// Whether Nesterov momentum is on.
    bool nesterov() const noexcept { return nesterov_; }

private:
    double lr_ = 0.0;
    double momentum_ = 0.0;
    double dampening_ = 0.0;
    double weight_decay_ = 0.0;
    bool nesterov_ = false;
};

/// SGD, exactly as torch.optim.SGD in torch 1.13 (single-tensor path). For a parameter p with
/// gradient g, in its group's lr and weight decay wd, momentum mu and dampening tau:
///   d <- g + wd p;  buf <- d on the first step, mu buf + (1 - tau) d afterwards;
///   d <- d + mu buf (nesterov) or buf (momentum > 0);  p <- p - lr d
/// State per parameter: "momentum_buffer" when momentum > 0, nothing otherwise. Unlike torch,
/// a buffer value below the smallest normal T is stored as 0 (subnormals are slow on x86; kernels/adamw.hpp).
template <class T>
class SGD : public Optimizer<T> {
public:
    /// One group of `params` (a model's parameters(); frozen ones are skipped at each step).
    /// Throws sft::Error if params is empty or holds a null or repeated parameter, or if nesterov
    /// is set without a positive momentum and zero dampening.
    SGD(std::vector<nn::Parameter<T>*> params, SGDOptions options)
        : SGD(std::vector<ParamGroup<T>>{ParamGroup<T>(std::move(params))}, options) {}

    /// A braced list of parameters, {&w, &b} (a vector of groups would also accept it).
    SGD(std::initializer_list<nn::Parameter<T>*> params, SGDOptions options)
        : SGD(std::vector<nn::Parameter<T>*>(params), options) {}

    /// Parameter groups, each with its own lr / weight decay when set (the options give the rest).
    /// Throws as the other constructor.
    SGD(const std::vector<ParamGroup<T>>& groups, SGDOptions options)
        : Optimizer<T>(groups, options.lr(), options.weight_decay(), "SGD"), options_(check(options)) {}

    std::string type_name() const override { return "SGD"; }
    /// The options it was built with (groups may override lr and weight decay).
    const SGDOptions& options() const noexcept { return options_; }

protected:
    std::vector<std::string> state_names() const override {
        if (options_.momentum() != 0.0) return {"momentum_buffer"};
        return {};
    }
    bool saves_step() const noexcept override { return false; }

    void update(typename Optimizer<T>::Slot& s, const typename Optimizer<T>::Group& g, bool first, std::size_t b,
                std::size_t e) const noexcept override {
        // Over elements [b, e): d = g + wd p; buf = d (first) or mu buf + (1 - tau) d;
        // d = d + mu buf (nesterov) or buf; p -= lr d.
        kernels::SgdCoefficients<T> c;
        c.neg_lr = static_cast<T>(-g.lr);
        c.weight_decay = static_cast<T>(g.weight_decay);
        c.momentum = static_cast<T>(options_.momentum());
        c.one_minus_dampening = static_cast<T>(1.0 - options_.dampening());
        c.nesterov = options_.nesterov();
        kernels::sgd_update(s.param->value().data() + b, s.param->grad().data() + b, s.buffers.empty() ? nullptr : s.buffers[0].data() + b,
                            e - b, c, first);
    }

private:
    static SGDOptions check(const SGDOptions& o) {
        if (o.nesterov() && (o.momentum() <= 0.0 || o.dampening() != 0.0))
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("SGD: nesterov momentum requires a momentum > 0 and zero dampening (momentum {}, dampening {})",
                                    o.momentum(), o.dampening()));
        return o;
    }

    SGDOptions options_;
};

}  // namespace sft::optim
