/// @file mse.hpp
/// sft::loss::MSE: mean squared error, as torch.nn.MSELoss (torch 1.13), three reductions.
#pragma once

#include <sft/error.hpp>
#include <sft/loss/loss.hpp>
#include <sft/nn/module.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <string>

namespace sft::loss {

/// Options of MSE, builder style as libtorch's torch::nn::MSELossOptions (mean reduction by default).
class MSEOptions {
public:
    /// How the element losses are reduced.
    MSEOptions& reduction(Reduction r) noexcept {
        reduction_ = r;
        return *this;
    }
    /// The reduction (mean by default).
    Reduction reduction() const noexcept { return reduction_; }

private:
    Reduction reduction_ = Reduction::mean;
};

/// Squared error of a prediction against a target of the same shape (any rank):
///   l_i = (x_i - y_i)^2,   mean: sum_i l_i / n,   dL/dx_i = (2 / n) (x_i - y_i)
/// as torch.nn.functional.mse_loss and its backward (norm 2/n for mean, 2 for sum). An empty
/// prediction gives 0 (PyTorch's mean gives NaN), as CrossEntropy does for a fully masked batch.
template <class T>
class MSE : public Loss<T, T> {
public:
    /// A loss with these options.
    explicit MSE(MSEOptions options = MSEOptions()) : options_(options) {}

    std::string type_name() const override { return "MSE"; }
    /// The options it was built with.
    const MSEOptions& options() const noexcept { return options_; }

    /// The reduced loss of `prediction` against `target`; caches dL/dprediction unless need_grad is
    /// false. With Reduction::none it returns the sum (losses() holds the element losses).
    /// Throws sft::Error (kind shape) naming both shapes when they differ (no broadcasting).
    T forward(const Tensor<T>& prediction, const Tensor<T>& target, bool need_grad = true) override {
        has_grad_ = false;  // a forward that throws leaves no stale gradient behind
        if (prediction.shape() != target.shape())
            throw Error(ErrorKind::shape, fmt::format("{}: prediction {} and target {}, expected the same shape", type_name(),
                                                      prediction.shape().str(), target.shape().str()));
        const std::size_t n = prediction.numel();
        const double norm = options_.reduction() == Reduction::mean ? (n ? 2.0 / static_cast<double>(n) : 0.0) : 2.0;
        const T tnorm = static_cast<T>(norm);
        // Outputs are reused from the last call when nobody else holds them (see nn::Module).
        nn::detail::reuse_or_empty(losses_, prediction.shape());
        if (need_grad) nn::detail::reuse_or_empty(grad_, prediction.shape());
        const T* x = prediction.data();
        const T* y = target.data();
        double total = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            const T d = x[i] - y[i];
            losses_[i] = d * d;
            total += static_cast<double>(d) * static_cast<double>(d);
            if (need_grad) grad_[i] = d * tnorm;  // torch: sub_out(grad_input, input, target).mul_(norm)
        }
        has_grad_ = need_grad;
        if (options_.reduction() == Reduction::mean) return n ? static_cast<T>(total / static_cast<double>(n)) : T(0);
        return static_cast<T>(total);
    }

    /// dL/dprediction of the last forward(), its shape (shared with the loss until the next forward).
    /// Throws sft::Error (kind state) without a forward with need_grad.
    Tensor<T> backward() override {
        if (!has_grad_)
            throw Error(ErrorKind::state, fmt::format("{}: backward() called before forward() (or after forward with need_grad false)", type_name()));
        return grad_;
    }

    /// For Reduction::none: the gradient of sum_i grad_losses_i l_i (grad_losses of the prediction's
    /// shape). Throws sft::Error (kind state) unless the last forward used Reduction::none with
    /// need_grad, (kind shape) when grad_losses has another shape.
    Tensor<T> backward(const Tensor<T>& grad_losses) {
        if (!has_grad_ || options_.reduction() != Reduction::none)
            throw Error(ErrorKind::state, fmt::format("{}: backward(grad_losses) needs a forward() with reduction none and need_grad, "
                                                      "reduction is {}", type_name(), reduction_name(options_.reduction())));
        if (grad_losses.shape() != grad_.shape())
            throw Error(ErrorKind::shape, fmt::format("{}: grad_losses {}, expected {}", type_name(), grad_losses.shape().str(), grad_.shape().str()));
        Tensor<T>& out = nn::detail::reuse_or_empty(weighted_grad_, grad_.shape());
        for (std::size_t i = 0; i < out.numel(); ++i) out[i] = grad_[i] * grad_losses[i];
        return out;
    }

    /// The element losses (x_i - y_i)^2 of the last forward(), shape of its prediction.
    const Tensor<T>& losses() const noexcept { return losses_; }

private:
    MSEOptions options_;
    Tensor<T> losses_;
    Tensor<T> grad_;
    Tensor<T> weighted_grad_;  // backward(grad_losses)'s kept result
    bool has_grad_ = false;
};

}  // namespace sft::loss
