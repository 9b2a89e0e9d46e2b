// Shared by the optimizer tests: the four raw parameters and the configurations of
// tests/reference/ref_optim.py (keep both in step), and the quadratic-plus-noise gradient.
#pragma once

#include <sft/optim/adam.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/optim/sgd.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace optim_test {

/// "w" [3, 4] and "frozen" [2] (frozen) in group 0, "b" [4] and "c" [5] in group 1; 23 values.
template <class T>
struct RawParams {
    std::vector<std::unique_ptr<sft::nn::Parameter<T>>> params;

    /// Values from a flat [23] tensor (converted to T).
    explicit RawParams(const sft::Tensor<double>& flat) {
        const std::pair<const char*, sft::Shape> shapes[] = {{"w", {3, 4}}, {"frozen", {2}}, {"b", {4}}, {"c", {5}}};
        std::size_t at = 0;
        for (const auto& [name, shape] : shapes) {
            sft::Tensor<T> v(shape);
            for (std::size_t i = 0; i < v.numel(); ++i) v[i] = static_cast<T>(flat[at++]);
            params.push_back(std::make_unique<sft::nn::Parameter<T>>(name, v));
        }
        params[1]->requires_grad_(false);
    }
    std::vector<sft::nn::Parameter<T>*> group(std::size_t g) const {
        return g == 0 ? std::vector<sft::nn::Parameter<T>*>{params[0].get(), params[1].get()}
                      : std::vector<sft::nn::Parameter<T>*>{params[2].get(), params[3].get()};
    }
    /// The 23 values, flat, in double.
    std::vector<double> flat() const {
        std::vector<double> out;
        for (const auto& p : params)
            for (T v : p->value()) out.push_back(static_cast<double>(v));
        return out;
    }
    /// g = a * p + noise for the trainable parameters (a and noise flat [23], in T as in PyTorch).
    void set_grads(const sft::Tensor<double>& a, const sft::Tensor<double>& noise_row) {
        std::size_t at = 0;
        for (const auto& p : params) {
            for (std::size_t i = 0; i < p->value().numel(); ++i, ++at)
                if (p->requires_grad()) p->grad()[i] = static_cast<T>(a[at]) * p->value()[i] + static_cast<T>(noise_row[at]);
        }
    }
};

/// The configuration `name` of ref_optim.py over the two groups of `raw`.
template <class T>
std::unique_ptr<sft::optim::Optimizer<T>> make_optimizer(const std::string& name, const RawParams<T>& raw) {
    using namespace sft::optim;
    auto groups = [&](std::optional<double> lr, std::optional<double> wd) {
        ParamGroup<T> g1(raw.group(1));
        if (lr) g1.lr(*lr);
        if (wd) g1.weight_decay(*wd);
        return std::vector<ParamGroup<T>>{ParamGroup<T>(raw.group(0)), g1};
    };
    if (name == "adamw")
        return std::make_unique<AdamW<T>>(groups(3e-2, 0.0), AdamWOptions(1e-2).betas(0.9, 0.999).eps(1e-8).weight_decay(0.05));
    if (name == "adamw_amsgrad")
        return std::make_unique<AdamW<T>>(groups(5e-3, 0.2), AdamWOptions(2e-2).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1).amsgrad(true));
    if (name == "adam") return std::make_unique<Adam<T>>(groups(2e-2, 0.01), AdamOptions(1e-2));
    if (name == "adam_wd_amsgrad")
        return std::make_unique<Adam<T>>(groups(3e-2, std::nullopt), AdamOptions(1e-2).weight_decay(0.05).amsgrad(true));
    if (name == "sgd") return std::make_unique<SGD<T>>(groups(0.1, std::nullopt), SGDOptions(0.05));
    if (name == "sgd_momentum") return std::make_unique<SGD<T>>(groups(0.02, 0.01), SGDOptions(0.05).momentum(0.9));
    if (name == "sgd_nesterov")
        return std::make_unique<SGD<T>>(groups(0.1, std::nullopt), SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.01));
    if (name == "sgd_dampening")
        return std::make_unique<SGD<T>>(groups(std::nullopt, 0.0), SGDOptions(0.05).momentum(0.8).dampening(0.3).weight_decay(0.02));
    throw std::runtime_error("unknown configuration " + name);
}

inline const char* const config_names[] = {"adamw", "adamw_amsgrad", "adam", "adam_wd_amsgrad",
                                           "sgd", "sgd_momentum", "sgd_nesterov", "sgd_dampening"};

}  // namespace optim_test
