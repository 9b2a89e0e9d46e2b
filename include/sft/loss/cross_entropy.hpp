/// @file cross_entropy.hpp
/// sft::loss::CrossEntropy: softmax cross-entropy of logits against class indices, as
/// torch.nn.CrossEntropyLoss (torch 1.13) with ignore_index, label_smoothing, class weights and
/// the three reductions. Log-softmax, loss and gradient come from one fused row kernel
/// (kernels::softmax_cross_entropy_row), so backward() costs nothing more.
#pragma once

#include <sft/error.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/softmax.hpp>
#include <sft/loss/loss.hpp>
#include <sft/nn/module.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sft::loss {

/// Options of CrossEntropy, builder style as libtorch's torch::nn::CrossEntropyLossOptions:
/// ignore_index -100, label_smoothing 0, no class weights, mean reduction by default.
class CrossEntropyOptions {
public:
    /// Rows whose target equals this value contribute no loss and get a zero gradient
    /// (padding, or the prompt tokens of a language model's sequence).
    CrossEntropyOptions& ignore_index(std::int64_t v) noexcept {
        ignore_index_ = v;
        return *this;
    }
    /// Weight e of the uniform distribution mixed into the target: (1 - e) one-hot + e / C.
    /// Throws sft::Error unless 0 <= e <= 1.
    CrossEntropyOptions& label_smoothing(double e) {
        if (!(e >= 0.0 && e <= 1.0))
            throw Error(ErrorKind::invalid_argument, fmt::format("CrossEntropyOptions: label_smoothing {} is invalid, expected in [0, 1]", e));
        label_smoothing_ = e;
        return *this;
    }
    /// A weight per class, [C] (an empty vector: none). Throws sft::Error on a negative or non-finite weight.
    CrossEntropyOptions& weight(std::vector<double> w) {
        for (std::size_t i = 0; i < w.size(); ++i)
            if (!(w[i] >= 0.0) || !std::isfinite(w[i]))
                throw Error(ErrorKind::invalid_argument, fmt::format("CrossEntropyOptions: weight[{}] = {} is invalid, expected finite and >= 0", i, w[i]));
        weight_ = std::move(w);
        return *this;
    }
    /// How the row losses are reduced (mean by default).
    CrossEntropyOptions& reduction(Reduction r) noexcept {
        reduction_ = r;
        return *this;
    }

    /// The ignored target value (-100 by default).
    std::int64_t ignore_index() const noexcept { return ignore_index_; }
    /// The label smoothing e (0 by default).
    double label_smoothing() const noexcept { return label_smoothing_; }
    /// The class weights, empty when none.
    const std::vector<double>& weight() const noexcept { return weight_; }
    /// The reduction (mean by default).
    Reduction reduction() const noexcept { return reduction_; }

private:
    std::int64_t ignore_index_ = -100;
    double label_smoothing_ = 0.0;
    std::vector<double> weight_;
    Reduction reduction_ = Reduction::mean;
};

/// Cross-entropy of logits [*, C] (the class dimension last, every leading dimension a row:
/// [N, C], or [B, T, V] for a language model) against class indices Tensor<std::int64_t> of the
/// leading shape ([N], [B, T]; a flat [rows] is accepted too). As torch.nn.functional.cross_entropy
/// on logits.view(-1, C) and targets.view(-1), the row loss with weights w (all 1 when absent) and
/// label smoothing e is
///   l_i = (1 - e) w_{y_i} (-log p_{i,y_i}) + (e / C) sum_k w_k (-log p_{i,k}),   p_i = softmax(x_i)
/// and the mean reduction divides sum_i l_i by sum_i w_{y_i} over the rows not ignored (their
/// count without weights), as PyTorch does. Rows whose target is ignore_index have l_i = 0 and a
/// zero gradient.
///
/// When every target of a batch is ignored (or weighs 0), PyTorch's mean is 0/0 = NaN; here it is
/// 0 with a zero gradient, so that a fully masked batch contributes nothing instead of poisoning
/// the training run. Sum and none agree with PyTorch (0).
template <class T>
class CrossEntropy : public Loss<T, std::int64_t> {
public:
    /// A loss with these options; the class weights are checked against C at each forward().
    explicit CrossEntropy(CrossEntropyOptions options = CrossEntropyOptions()) : options_(std::move(options)) {
        weight_sum_ = 0;
        if (!options_.weight().empty()) {
            weight_ = Tensor<T>::empty({options_.weight().size()});
            for (std::size_t i = 0; i < weight_.numel(); ++i) {
                weight_[i] = static_cast<T>(options_.weight()[i]);
                weight_sum_ += weight_[i];
            }
        }
    }

    std::string type_name() const override { return "CrossEntropy"; }
    /// The options it was built with.
    const CrossEntropyOptions& options() const noexcept { return options_; }

    /// The reduced loss of logits [*, C] against targets [*] (see the class comment); caches
    /// dL/dlogits for backward() unless need_grad is false. With Reduction::none it returns the sum
    /// of the row losses (losses() holds them) and backward() the gradient of that sum.
    /// Throws sft::Error (kind shape) when logits have rank < 2, no classes, or targets of another
    /// leading shape, or the class weights do not have C entries; (kind invalid_argument) naming the
    /// row and the value when a target is outside [0, C) and is not ignore_index.
    T forward(const Tensor<T>& logits, const Tensor<std::int64_t>& targets, bool need_grad = true) override {
        has_grad_ = false;  // a forward that throws leaves no stale gradient behind
        const std::size_t classes = check_shapes(logits, targets);
        const std::size_t rows = logits.numel() / classes;
        const std::int64_t* y = targets.data();
        const T* w = weight_.defined() ? weight_.data() : nullptr;

        // Targets first: a bad one throws before anything is computed. The mean divides by the
        // sum of the weights of the targets (their count without weights), as PyTorch's nll_loss.
        double denom = 0.0;
        for (std::size_t i = 0; i < rows; ++i) {
            if (y[i] == options_.ignore_index()) continue;
            if (y[i] < 0 || static_cast<std::uint64_t>(y[i]) >= classes)
                throw Error(ErrorKind::invalid_argument,
                            fmt::format("{}: target {} at row {} is outside [0, {}) and is not ignore_index ({})", type_name(), y[i], i,
                                        classes, options_.ignore_index()));
            denom += w ? static_cast<double>(w[y[i]]) : 1.0;
        }
        const double scale = options_.reduction() != Reduction::mean ? 1.0 : (denom > 0.0 ? 1.0 / denom : 0.0);

        // Outputs are reused from the last call when their shape matches and nobody else holds
        // them (without need_grad the gradient buffer serves as the rows' scratch).
        const Shape loss_shape = targets.rank() == logits.rank() - 1 ? targets.shape() : Shape{rows};
        nn::detail::reuse_or_empty(losses_, loss_shape);
        nn::detail::reuse_or_empty(grad_, logits.shape());
        const T smoothing = static_cast<T>(options_.label_smoothing());
        const T weight_sum = w ? weight_sum_ : static_cast<T>(classes);

        // Rows are independent: on sft's pool when large. The loss is summed afterwards in row order,
        // so it does not depend on the number of threads.
        const std::int64_t ignore = options_.ignore_index();
        const T tscale = static_cast<T>(scale);
        const T* x = logits.data();
        T* grad = grad_.data();
        T* losses = losses_.data();
        kernels::parallel_rows(rows, classes, [=](std::size_t r0, std::size_t r1) {
            for (std::size_t i = r0; i < r1; ++i) {
                T* g = grad + i * classes;
                if (y[i] == ignore) {
                    losses[i] = T(0);
                    std::fill(g, g + classes, T(0));
                    continue;
                }
                losses[i] = kernels::softmax_cross_entropy_row(x + i * classes, classes, static_cast<std::size_t>(y[i]), smoothing, w,
                                                               weight_sum, tscale, g);
            }
        });
        double total = 0.0;
        for (std::size_t i = 0; i < rows; ++i) total += static_cast<double>(losses[i]);
        has_grad_ = need_grad;
        logits_shape_ = logits.shape();
        denominator_ = denom;
        return static_cast<T>(total * scale);
    }

    /// dL/dlogits of the last forward(), shape of its logits (shared with the loss until the next
    /// forward; clone() it to keep it). Throws sft::Error (kind state) without a forward with need_grad.
    Tensor<T> backward() override {
        if (!has_grad_)
            throw Error(ErrorKind::state, fmt::format("{}: backward() called before forward() (or after forward with need_grad false)", type_name()));
        return grad_;
    }

    /// For Reduction::none: the gradient of sum_i grad_losses_i l_i, grad_losses of the shape of
    /// losses(). Throws sft::Error (kind state) unless the last forward used Reduction::none with
    /// need_grad, (kind shape) when grad_losses has another shape.
    Tensor<T> backward(const Tensor<T>& grad_losses) {
        if (!has_grad_ || options_.reduction() != Reduction::none)
            throw Error(ErrorKind::state, fmt::format("{}: backward(grad_losses) needs a forward() with reduction none and need_grad, "
                                                      "reduction is {}", type_name(), reduction_name(options_.reduction())));
        if (grad_losses.shape() != losses_.shape())
            throw Error(ErrorKind::shape, fmt::format("{}: grad_losses {}, expected {} (the shape of losses())", type_name(),
                                                      grad_losses.shape().str(), losses_.shape().str()));
        const std::size_t classes = logits_shape_[logits_shape_.rank() - 1];
        Tensor<T>& out = nn::detail::reuse_or_empty(weighted_grad_, logits_shape_);
        for (std::size_t i = 0; i < losses_.numel(); ++i)
            for (std::size_t j = 0; j < classes; ++j) out[i * classes + j] = grad_losses[i] * grad_[i * classes + j];
        return out;
    }

    /// The row losses l_i of the last forward(), shape of its targets (0 for ignored rows).
    const Tensor<T>& losses() const noexcept { return losses_; }
    /// The divisor of the last mean: the summed weight of the targets not ignored (their count without weights).
    double denominator() const noexcept { return denominator_; }

private:
    std::size_t check_shapes(const Tensor<T>& logits, const Tensor<std::int64_t>& targets) const {
        if (logits.rank() < 2 || logits.shape()[logits.rank() - 1] == 0)
            throw Error(ErrorKind::shape, fmt::format("{}: logits {}, expected [*, classes] with classes > 0", type_name(), logits.shape().str()));
        const std::size_t classes = logits.shape()[logits.rank() - 1];
        const std::size_t rows = logits.numel() / classes;
        bool ok = targets.rank() == logits.rank() - 1;
        for (std::size_t d = 0; ok && d < targets.rank(); ++d) ok = targets.shape()[d] == logits.shape()[d];
        if (!ok && !(targets.rank() == 1 && targets.numel() == rows)) {
            std::vector<std::size_t> lead(logits.shape().begin(), logits.shape().end() - 1);
            throw Error(ErrorKind::shape, fmt::format("{}: logits {} and targets {}, expected targets {} (the logits' leading dimensions)",
                                                      type_name(), logits.shape().str(), targets.shape().str(), Shape(lead).str()));
        }
        if (weight_.defined() && weight_.numel() != classes)
            throw Error(ErrorKind::shape, fmt::format("{}: {} class weights for logits {} with {} classes", type_name(), weight_.numel(),
                                                      logits.shape().str(), classes));
        return classes;
    }

    CrossEntropyOptions options_;
    Tensor<T> weight_;
    T weight_sum_ = T(0);
    Tensor<T> losses_;
    Tensor<T> grad_;
    Tensor<T> weighted_grad_;  // backward(grad_losses)'s kept result
    Shape logits_shape_;
    double denominator_ = 0.0;
    bool has_grad_ = false;
};

}  // namespace sft::loss
