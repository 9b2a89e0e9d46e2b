/// @file activation.hpp
/// Elementwise activation layers: ReLU, GELU (exact or tanh approximation), Tanh, Sigmoid, as
/// torch.nn's. Any shape -> the same shape. The loops are the kernels of sft/kernels/activation.hpp.
#pragma once

#include <sft/error.hpp>
#include <sft/kernels/activation.hpp>
#include <sft/nn/module.hpp>

#include <fmt/format.h>

#include <string>

namespace sft::nn {

namespace detail {

/// Shared plumbing of the elementwise activations: the input check, the cache (the forward input
/// or output, whichever the derivative needs), the kept output and input-gradient buffers (reused
/// across steps, see Module) and the checks of backward. A layer supplies its two kernels and
/// says which tensor its derivative needs.
///
/// The steps are public in two halves each, for Sequential's row-parallel runs (see Sequential):
/// forward_prepare / backward_prepare do the checks, claim the buffers and save or hand over the
/// cache; forward_range / backward_range compute any range of elements. forward() and backward()
/// are the two halves over all elements.
template <class T>
class ElementwiseActivation : public Module<T> {
public:
    void release_saved() noexcept override { cached_ = Tensor<T>(); }

    /// y = f(x), same shape. Throws sft::Error when x is undefined.
    Tensor<T> forward(const Tensor<T>& input) override {
        Tensor<T> out = forward_prepare(input);
        forward_kernel(input.data(), out.data(), input.numel());
        return out;
    }

    /// dx = dy * f'(from the cache). Throws sft::Error before any forward or on a shape mismatch.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        Tensor<T> saved;
        Tensor<T> grad_input = backward_prepare(grad_output, need_input_grad, saved);
        if (grad_input.defined()) backward_kernel(grad_output.data(), saved.data(), grad_input.data(), saved.numel());
        return grad_input;
    }

    /// The first half of forward(): the checks, the output buffer (of the input's shape) and the
    /// cache; the output's values are not written. Throws sft::Error as forward().
    Tensor<T> forward_prepare(const Tensor<T>& input) {
        check_input(input);
        Tensor<T>& out = output_for(input);
        cached_ = saves_output() ? out : input;
        return out;
    }
    /// The second half of forward() on n elements: y[i] = f(x[i]).
    void forward_range(const T* x, T* y, std::size_t n) const noexcept { forward_kernel(x, y, n); }

    /// The first half of backward(): the checks, the cache moved into `saved` (released from the
    /// layer), and the input-gradient buffer of its shape, or an undefined tensor when
    /// need_input_grad is false. Throws sft::Error as backward().
    Tensor<T> backward_prepare(const Tensor<T>& grad_output, bool need_input_grad, Tensor<T>& saved) {
        check_backward(grad_output);
        saved = cached_;
        cached_ = Tensor<T>();  // released, as PyTorch frees saved tensors after backward
        if (!need_input_grad) return Tensor<T>();
        return nn::detail::reuse_or_empty(grad_input_, saved.shape());
    }
    /// The second half of backward() on n elements: dx[i] = dy[i] f'(saved[i]).
    void backward_range(const T* dy, const T* saved, T* dx, std::size_t n) const noexcept { backward_kernel(dy, saved, dx, n); }

protected:
    /// y = f(x) over n elements (threaded on sft's pool; serial inside a pool task).
    virtual void forward_kernel(const T* x, T* y, std::size_t n) const noexcept = 0;
    /// dx = dy f'(.) over n elements, from the saved input or output.
    virtual void backward_kernel(const T* dy, const T* saved, T* dx, std::size_t n) const noexcept = 0;
    /// True when the derivative is a function of the output (saved), false of the input.
    virtual bool saves_output() const noexcept = 0;

    /// Throws sft::Error naming the layer when `input` is undefined.
    void check_input(const Tensor<T>& input) const {
        if (!input.defined())
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: forward() given an undefined tensor", this->label()));
    }

    /// The buffer forward() writes its output into, of the input's shape: the last saved tensor is
    /// dropped first, then the kept buffer is reused unless someone else still holds it.
    Tensor<T>& output_for(const Tensor<T>& input) {
        cached_ = Tensor<T>();
        return nn::detail::reuse_or_empty(output_, input.shape());
    }

    /// The checks of every backward: a forward came first (since the last backward) and
    /// grad_output has the shape of the last output.
    void check_backward(const Tensor<T>& grad_output) const {
        if (!cached_.defined()) this->throw_no_forward();
        if (!grad_output.defined())
            throw Error(ErrorKind::shape, fmt::format("{}: backward() given an undefined grad_output, expected {}", this->label(),
                                                      cached_.shape().str()));
        this->check_grad_shape(grad_output, cached_.shape());
    }

    /// The forward input or output, as the layer's derivative needs (shape of both).
    Tensor<T> cached_;
    /// Kept buffers of the output and of the input gradient.
    Tensor<T> output_, grad_input_;
};

}  // namespace detail

/// max(x, 0), as torch.nn.ReLU: any shape -> same shape. Backward passes the gradient where the
/// input was positive (0 at x == 0, as PyTorch). Throws sft::Error on an undefined input.
template <class T>
class ReLU : public detail::ElementwiseActivation<T> {
public:
    /// "ReLU", as error messages name this layer.
    std::string type_name() const override { return "ReLU"; }

    // forward() and backward() are ElementwiseActivation's: y = relu(x); dx = dy where y > 0, else 0.

    /// For Sequential's fused Linear + ReLU: the buffer the fused forward writes y = relu(x W^T + b)
    /// into (the last saved output dropped first), passed to Linear::forward_act.
    Tensor<T>& fused_output_buffer() noexcept {
        this->cached_ = Tensor<T>();
        return this->output_;
    }
    /// For the fused forward: records its output y as what backward() needs.
    void set_fused_output(const Tensor<T>& y) noexcept { this->cached_ = y; }

    /// For Sequential's fused Conv2d + ReLU backward (Conv2d::backward_relu masks with it): the
    /// checks of backward(), then the saved output y, released from the layer as backward() does.
    Tensor<T> take_saved_output(const Tensor<T>& grad_output) {
        Tensor<T> y;
        this->backward_prepare(grad_output, false, y);
        return y;
    }

    /// backward() of [rows, cols] whose dz = dy where y > 0 also adds the column sums of dz into
    /// `bias_grad` (the preceding Linear's bias gradient, or nullptr) in the same pass
    /// (kernels::relu_backward_bias): Sequential's fused Linear + ReLU backward. Same checks,
    /// errors and release as backward(); the result is bit-identical to backward() followed by
    /// the Linear's column sums.
    Tensor<T> backward_bias(const Tensor<T>& grad_output, T* bias_grad) {
        Tensor<T> y;
        Tensor<T> dz = this->backward_prepare(grad_output, true, y);
        const std::size_t cols = y.rank() ? y.shape()[y.rank() - 1] : 1;
        kernels::relu_backward_bias(grad_output.data(), y.data(), dz.data(), cols ? y.numel() / cols : 0, cols, bias_grad);
        return dz;
    }

protected:
    void forward_kernel(const T* x, T* y, std::size_t n) const noexcept override { kernels::relu_forward(x, y, n); }
    void backward_kernel(const T* dy, const T* y, T* dx, std::size_t n) const noexcept override { kernels::relu_backward(dy, y, dx, n); }
    bool saves_output() const noexcept override { return true; }  // y > 0 exactly where x > 0
};

/// How GELU computes Phi(x), as torch.nn.GELU's `approximate` argument.
enum class GELUApproximate {
    none,  ///< exact: 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default
    tanh,  ///< 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), approximate='tanh' (GPT-2, BERT)
};

/// x * Phi(x), as torch.nn.GELU: any shape -> same shape. Exact (erf) by default; the tanh
/// approximation with GELU<T>(GELUApproximate::tanh) or GELU<T>("tanh").
template <class T>
class GELU : public detail::ElementwiseActivation<T> {
public:
    /// The exact GELU unless `approximate` says tanh.
    explicit GELU(GELUApproximate approximate = GELUApproximate::none) noexcept : approximate_(approximate) {}
    /// As torch.nn.GELU(approximate=...): "none" or "tanh". Throws sft::Error on any other string.
    explicit GELU(const std::string& approximate) : approximate_(parse(approximate)) {}

    /// "GELU", as error messages name this layer.
    std::string type_name() const override { return "GELU"; }
    /// Exact (none) or tanh approximation.
    GELUApproximate approximate() const noexcept { return approximate_; }

    // forward() and backward() are ElementwiseActivation's: y = gelu(x); dx = dy * gelu'(x) from the cached input.

protected:
    void forward_kernel(const T* x, T* y, std::size_t n) const noexcept override {
        if (approximate_ == GELUApproximate::tanh) kernels::gelu_tanh_forward(x, y, n);
        else kernels::gelu_forward(x, y, n);
    }
    void backward_kernel(const T* dy, const T* x, T* dx, std::size_t n) const noexcept override {
        if (approximate_ == GELUApproximate::tanh) kernels::gelu_tanh_backward(dy, x, dx, n);
        else kernels::gelu_backward(dy, x, dx, n);
    }
    bool saves_output() const noexcept override { return false; }  // the derivative is a function of x

private:
    static GELUApproximate parse(const std::string& s) {
        if (s == "none") return GELUApproximate::none;
        if (s == "tanh") return GELUApproximate::tanh;
        throw Error(ErrorKind::invalid_argument, fmt::format("GELU: approximate = '{}', expected 'none' or 'tanh'", s));
    }

    GELUApproximate approximate_;
};

/// tanh(x), as torch.nn.Tanh: any shape -> same shape. Backward: dy * (1 - y^2) from the output.
template <class T>
class Tanh : public detail::ElementwiseActivation<T> {
public:
    /// "Tanh", as error messages name this layer.
    std::string type_name() const override { return "Tanh"; }

    // forward() and backward() are ElementwiseActivation's: y = tanh(x); dx = dy * (1 - y^2).

protected:
    void forward_kernel(const T* x, T* y, std::size_t n) const noexcept override { kernels::tanh_forward(x, y, n); }
    void backward_kernel(const T* dy, const T* y, T* dx, std::size_t n) const noexcept override { kernels::tanh_backward(dy, y, dx, n); }
    bool saves_output() const noexcept override { return true; }
};

/// 1 / (1 + exp(-x)), as torch.nn.Sigmoid: any shape -> same shape. Backward: dy * y (1 - y).
template <class T>
class Sigmoid : public detail::ElementwiseActivation<T> {
public:
    /// "Sigmoid", as error messages name this layer.
    std::string type_name() const override { return "Sigmoid"; }

    // forward() and backward() are ElementwiseActivation's: y = sigmoid(x); dx = dy * y (1 - y).

protected:
    void forward_kernel(const T* x, T* y, std::size_t n) const noexcept override { kernels::sigmoid_forward(x, y, n); }
    void backward_kernel(const T* dy, const T* y, T* dx, std::size_t n) const noexcept override { kernels::sigmoid_backward(dy, y, dx, n); }
    bool saves_output() const noexcept override { return true; }
};

}  // namespace sft::nn
