/// @file layernorm.hpp
/// sft::nn::LayerNorm, normalisation over the last dimension(s) as torch.nn.LayerNorm, and its
/// options LayerNormOptions. Each row (the trailing normalized_shape elements) is normalised by
/// the row kernels of sft/kernels/layernorm.hpp:
///   y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   (var biased, as PyTorch)
#pragma once

#include <sft/kernels/layernorm.hpp>
#include <sft/nn/module.hpp>

#include <type_traits>
#include <vector>

namespace sft::nn {

/// Options of LayerNorm in libtorch's builder style: LayerNormOptions({768}).eps(1e-5).elementwise_affine(true).
/// Defaults as PyTorch: eps 1e-5, elementwise_affine true, bias true (the bias switch of PyTorch 2.1+).
struct LayerNormOptions {
    /// The trailing dimensions to normalise over, e.g. {768} or {H, W}.
    LayerNormOptions(std::vector<std::size_t> normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT: implicit, as libtorch

    /// Added to the variance before the square root (default 1e-5).
    LayerNormOptions& eps(double e) noexcept {
        eps_ = e;
        return *this;
    }
    /// Whether the layer has "weight" (init 1) and "bias" (init 0) of shape normalized_shape (default true).
    LayerNormOptions& elementwise_affine(bool on) noexcept {
        elementwise_affine_ = on;
        return *this;
    }
    /// Whether an affine layer has its "bias" (default true; PyTorch 2.1's bias=False drops it).
    LayerNormOptions& bias(bool on) noexcept {
        bias_ = on;
        return *this;
    }

    const std::vector<std::size_t>& normalized_shape() const noexcept { return normalized_shape_; }
    double eps() const noexcept { return eps_; }
    bool elementwise_affine() const noexcept { return elementwise_affine_; }
    bool bias() const noexcept { return bias_; }

private:
    std::vector<std::size_t> normalized_shape_;
    double eps_ = 1e-5;
    bool elementwise_affine_ = true;
    bool bias_ = true;
};

/// Layer normalisation: [*, normalized_shape] -> same shape, each trailing block of
/// prod(normalized_shape) elements normalised on its own, as torch.nn.LayerNorm. Parameters
/// "weight" (init 1) and "bias" (init 0) of shape normalized_shape when elementwise_affine.
/// The same in training and eval mode.
template <class T>
class LayerNorm : public Module<T> {
    static_assert(std::is_floating_point_v<T>, "sft::nn::LayerNorm: T must be float or double");

public:
    /// Throws sft::Error when normalized_shape is empty, has more than 4 dimensions or a zero one,
    /// or eps is negative.
    explicit LayerNorm(const LayerNormOptions& options) : opt_(options) {
        const auto& ns = options.normalized_shape();
        row_ = 1;
        for (std::size_t d : ns) row_ *= d;
        if (ns.empty() || ns.size() > Shape::max_rank || row_ == 0 || !(options.eps() >= 0))
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("LayerNorm({}, eps={}): normalized_shape must have 1 to {} positive dimensions and eps be >= 0",
                                    dims_str("[", ns), options.eps(), Shape::max_rank));
        if (options.elementwise_affine()) {
            weight_ = this->register_parameter("weight", Tensor<T>::ones(Shape(ns)));
            if (options.bias()) bias_ = this->register_parameter("bias", Tensor<T>::zeros(Shape(ns)));
        }
    }
    /// Over the last dimension of size `normalized_size`: LayerNorm<T>(768), as torch.nn.LayerNorm(768).
    explicit LayerNorm(std::size_t normalized_size, double eps = 1e-5, bool elementwise_affine = true)
        : LayerNorm(LayerNormOptions({normalized_size}).eps(eps).elementwise_affine(elementwise_affine)) {}

    std::string type_name() const override { return "LayerNorm"; }
    const LayerNormOptions& options() const noexcept { return opt_; }
    /// The scale, of shape normalized_shape; nullptr without elementwise_affine.
    Parameter<T>* weight() noexcept { return weight_; }
    /// The shift, of shape normalized_shape; nullptr without elementwise_affine or bias.
    Parameter<T>* bias() noexcept { return bias_; }

    /// [*, normalized_shape] -> same shape, into a kept buffer (see Module); rows run on sft's pool
    /// when large. Throws sft::Error (kind shape) naming the layer when the input does not end with
    /// normalized_shape.
    Tensor<T> forward(const Tensor<T>& input) override {
        check_input(input);
        input_ = Tensor<T>();
        const std::size_t rows = input.numel() / row_, n = row_;
        Tensor<T>& out = nn::detail::reuse_or_empty(output_, input.shape());
        mean_.resize(rows);
        rstd_.resize(rows);
        const T* w = weight_ ? weight_->value().data() : nullptr;
        const T* b = bias_ ? bias_->value().data() : nullptr;
        const T eps = static_cast<T>(opt_.eps());
        const T* x = input.data();
        T* y = out.data();
        T* mean = mean_.data();
        T* rstd = rstd_.data();
        kernels::parallel_rows(rows, n, [=](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r) kernels::layernorm_forward_row<T>(x + r * n, n, w, b, eps, y + r * n, mean + r, rstd + r);
        });
        input_ = input;
        return out;
    }

    /// grad_output -> grad_input, both of the input's shape; adds dL/dweight = sum over rows of
    /// dy * xhat and dL/dbias = sum over rows of dy into the trainable parameters' grad().
    /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight, per row (rows on the
    /// pool), then the parameter sums by blocks of columns, rows in order (bit-identical for every
    /// thread count). Releases the saved input. Throws sft::Error without a forward since the last
    /// backward, or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!input_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, input_.shape());
        const Tensor<T> input = input_;
        input_ = Tensor<T>();  // released, as PyTorch frees saved tensors after backward
        const std::size_t rows = input.numel() / row_, n = row_;
        const T* w = weight_ ? weight_->value().data() : nullptr;
        T* dw = weight_ && weight_->requires_grad() ? weight_->grad().data() : nullptr;
        T* db = bias_ && bias_->requires_grad() ? bias_->grad().data() : nullptr;
        const T* dy = grad_output.data();
        const T* x = input.data();
        const T* mean = mean_.data();
        const T* rstd = rstd_.data();
        kernels::layernorm_backward_params<T>(dy, x, rows, n, mean, rstd, dw, db);
        if (!need_input_grad) return Tensor<T>();
        Tensor<T>& grad_input = nn::detail::reuse_or_empty(grad_input_, input.shape());
        T* dx = grad_input.data();
        kernels::parallel_rows(rows, n, [=](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r)
                kernels::layernorm_backward_row<T>(dy + r * n, x + r * n, n, mean[r], rstd[r], w, dx + r * n, nullptr, nullptr);
        });
        return grad_input;
    }

    void release_saved() noexcept override { input_ = Tensor<T>(); }

private:
    void check_input(const Tensor<T>& input) const {
        const auto& ns = opt_.normalized_shape();
        const Shape& s = input.shape();
        bool ok = s.rank() >= ns.size();
        for (std::size_t i = 0; ok && i < ns.size(); ++i) ok = s[s.rank() - ns.size() + i] == ns[i];
        if (!ok) throw Error(ErrorKind::shape, fmt::format("{}: input {}, expected {}", this->label(), s.str(), dims_str("[*, ", ns)));
    }

    // "[*, 4, 5]" or "[4, 5]" after the given opening.
    static std::string dims_str(const char* open, const std::vector<std::size_t>& dims) {
        std::string s = open;
        for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
        return s + "]";
    }

    LayerNormOptions opt_;
    std::size_t row_ = 1;  // prod(normalized_shape)
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
    // Cached by forward() for backward(): the input and each row's mean and 1/sqrt(var + eps).
    Tensor<T> input_;
    std::vector<T> mean_, rstd_;
    Tensor<T> output_, grad_input_;  // kept buffers, reused across steps (see Module)
};

}  // namespace sft::nn
