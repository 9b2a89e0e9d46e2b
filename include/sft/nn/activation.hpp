/// @file activation.hpp
/// Elementwise activation layers: ReLU (more follow the same pattern). Any shape -> same shape.
#pragma once

#include <sft/nn/module.hpp>

namespace sft::nn {

/// max(x, 0), as torch.nn.ReLU. Backward passes the gradient where the input was positive.
template <class T>
class ReLU : public Module<T> {
public:
    std::string type_name() const override { return "ReLU"; }

    Tensor<T> forward(const Tensor<T>& input) override {
        Tensor<T> out = Tensor<T>::empty(input.shape());
        const T* x = input.data();
        T* y = out.data();
        for (std::size_t i = 0, n = input.numel(); i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
        output_ = out;
        return out;
    }

    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!output_.defined()) this->throw_no_forward();
        this->check_grad_shape(grad_output, output_.shape());
        if (!need_input_grad) return Tensor<T>();
        Tensor<T> grad_input = Tensor<T>::empty(output_.shape());
        const T* y = output_.data();
        const T* g = grad_output.data();
        T* dx = grad_input.data();
        for (std::size_t i = 0, n = output_.numel(); i < n; ++i) dx[i] = y[i] > T(0) ? g[i] : T(0);
        return grad_input;
    }

private:
    Tensor<T> output_;  // y > 0 exactly where x > 0, so the output is enough for backward
};

}  // namespace sft::nn
