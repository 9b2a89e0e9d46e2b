/// @file linear.hpp
/// sft::nn::Linear: y = x W^T + b, as torch.nn.Linear (weight [out, in], bias [out]).
#pragma once

#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/gemm.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/nn/module.hpp>

#include <cmath>

namespace sft::nn {

/// Fully connected layer: [*, in] -> [*, out] (rank 2 to 4, the leading dimensions are flattened).
/// Initialised as PyTorch: weight and bias uniform in +-1/sqrt(in).
template <class T>
class Linear : public Module<T> {
public:
    /// Throws sft::Error when in or out is 0.
    Linear(std::size_t in_features, std::size_t out_features, bool bias = true, Rng& rng = default_rng())
        : in_(in_features), out_(out_features) {
        if (in_features == 0 || out_features == 0)
            throw Error(ErrorKind::invalid_argument, fmt::format("Linear({}, {}): sizes must be positive", in_features, out_features));
        // kaiming_uniform_(a=sqrt(5)) on [out, in] gives bound 1/sqrt(fan_in); the bias uses the same bound.
        const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
        Tensor<T> w = Tensor<T>::empty({out_features, in_features});
        for (auto& v : w) v = static_cast<T>(rng.uniform(-bound, bound));
        weight_ = this->register_parameter("weight", std::move(w));
        if (bias) {
            Tensor<T> b = Tensor<T>::empty({out_features});
            for (auto& v : b) v = static_cast<T>(rng.uniform(-bound, bound));
            bias_ = this->register_parameter("bias", std::move(b));
        }
    }

    /// "Linear", as error messages name this layer.
    std::string type_name() const override { return "Linear"; }
    /// The size of the input's last dimension.
    std::size_t in_features() const noexcept { return in_; }
    /// The size of the output's last dimension.
    std::size_t out_features() const noexcept { return out_; }
    /// The weight [out, in].
    Parameter<T>& weight() noexcept { return *weight_; }
    /// The bias; nullptr when built without one.
    Parameter<T>* bias() noexcept { return bias_; }

    /// [*, in] -> [*, out]: y = x W^T + b (the bias added by the GEMM, kernels::gemm_bias_act). The
    /// output is written into a buffer the layer keeps (see Module: reused when the caller dropped
    /// the last one). Throws sft::Error when the last dimension is not in_features or rank < 2.
    Tensor<T> forward(const Tensor<T>& input) override { return forward_act(input, kernels::GemmActivation::none, output_); }

    /// y = act(x W^T + b) written into `buffer` (reused when only `buffer` holds it, else a fresh
    /// tensor), in one GEMM whose epilogue adds the bias and applies act; saves x for backward().
    /// Sequential calls it with act = relu to fuse a following ReLU, whose output buffer it passes.
    /// Throws sft::Error as forward().
    Tensor<T> forward_act(const Tensor<T>& input, kernels::GemmActivation act, Tensor<T>& buffer) {
        Tensor<T> out = forward_prepare(input, buffer);
        forward_rows(input.data(), out.data(), input.numel() / in_, act);
        return out;
    }

    /// The first half of forward_act() (for Sequential's row-parallel runs, see Sequential): the
    /// checks, the output tensor claimed from `buffer` as forward_act() claims it (its values are
    /// not written), the input saved for backward(). Throws sft::Error as forward().
    Tensor<T> forward_prepare(const Tensor<T>& input, Tensor<T>& buffer) {
        if (input.rank() < 2 || input.shape()[input.rank() - 1] != in_)
            throw Error(ErrorKind::shape, fmt::format("{}: input {}, expected [*, {}]", this->label(), input.shape().str(), in_));
        Shape out_shape = input.shape();
        out_shape[out_shape.rank() - 1] = out_;
        input_ = Tensor<T>();  // the last saved input, dropped before the buffer is claimed
        Tensor<T>& out = nn::detail::reuse_or_empty(buffer, out_shape);
        input_ = input;
        out_shape_ = out_shape;
        return out;
    }
    /// forward_prepare() into the layer's own output buffer (forward()'s).
    Tensor<T> forward_prepare(const Tensor<T>& input) { return forward_prepare(input, output_); }

    /// The second half of forward_act() on `rows` rows: y[rows, out] = act(x[rows, in] W^T + b).
    /// Each row's values do not depend on how the rows are cut (kernels::gemm_bias_act).
    void forward_rows(const T* x, T* y, std::size_t rows, kernels::GemmActivation act) const noexcept {
        kernels::gemm_bias_act<T>(false, true, rows, out_, in_, x, in_, weight_->value().data(), in_, bias_ ? bias_->value().data() : nullptr,
                                  act, y, out_);
    }

    /// dy [*, out] -> dx [*, in] = dy W; accumulates dW += dy^T x and db += column sums of dy for the
    /// trainable ones, then releases the saved input. Throws sft::Error without a forward since the
    /// last backward, or when dy's shape is not the last output's.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        return backward_impl(grad_output, need_input_grad, true);
    }

    /// backward() without the bias gradient: for Sequential's fused Linear + ReLU, whose ReLU
    /// backward already added the column sums of dz into the bias gradient (kernels::relu_backward_bias).
    Tensor<T> backward_without_bias(const Tensor<T>& grad_output, bool need_input_grad = true) {
        return backward_impl(grad_output, need_input_grad, false);
    }

    /// The bias gradient if the layer has a trainable bias, else nullptr.
    T* trainable_bias_grad() noexcept { return bias_ && bias_->requires_grad() ? bias_->grad().data() : nullptr; }

    void release_saved() noexcept override { input_ = Tensor<T>(); }

    /// The first half of backward() (for Sequential's row-parallel runs): the checks, the saved
    /// input moved into `saved_input` (released from the layer), and the input-gradient buffer
    /// (its values not written), or an undefined tensor when need_input_grad is false. Throws
    /// sft::Error as backward().
    Tensor<T> backward_prepare(const Tensor<T>& grad_output, bool need_input_grad, Tensor<T>& saved_input) {
        if (!input_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, out_shape_);
        saved_input = input_;
        input_ = Tensor<T>();  // released, as PyTorch frees saved tensors after backward
        if (!need_input_grad) return Tensor<T>();
        return nn::detail::reuse_or_empty(grad_input_, saved_input.shape());
    }
    /// dx[rows, in] = g[rows, out] W, on any cut of the rows (each row's values do not depend on it).
    void backward_input_rows(const T* g, T* dx, std::size_t rows) const noexcept {
        kernels::gemm<T>(false, false, rows, in_, out_, T(1), g, out_, weight_->value().data(), in_, T(0), dx, in_);
    }
    /// The parameter gradients of backward() from grad_output g and the input saved by the
    /// forward: dW += g^T x and, when with_bias, db += column sums of g, for the trainable ones.
    void accumulate_param_grads(const Tensor<T>& g, const Tensor<T>& input, bool with_bias) noexcept {
        const std::size_t rows = input.numel() / in_;
        if (weight_->requires_grad()) {  // dW[out, in] += g^T[out, rows] x[rows, in] (=, after zero_grad())
            const nn::GradTarget<T> dw = weight_->grad_for_backward();
            kernels::gemm<T>(true, false, out_, in_, rows, T(1), g.data(), out_, input.data(), in_, dw.overwrite ? T(0) : T(1), dw.data, in_);
        }
        if (with_bias && bias_ && bias_->requires_grad())  // db[out] += column sums of g
            kernels::add_col_sums(g.data(), rows, out_, bias_->grad().data());
    }

private:
    Tensor<T> backward_impl(const Tensor<T>& grad_output, bool need_input_grad, bool with_bias) {
        Tensor<T> input;
        Tensor<T> grad_input = backward_prepare(grad_output, need_input_grad, input);
        accumulate_param_grads(grad_output, input, with_bias);
        if (grad_input.defined()) backward_input_rows(grad_output.data(), grad_input.data(), input.numel() / in_);
        return grad_input;
    }

    std::size_t in_, out_;
    Parameter<T>* weight_ = nullptr;
    Parameter<T>* bias_ = nullptr;
    Tensor<T> input_;       // saved by forward for backward, released by backward
    Shape out_shape_;
    Tensor<T> output_;      // kept buffers, reused across steps (see Module)
    Tensor<T> grad_input_;
};

}  // namespace sft::nn
