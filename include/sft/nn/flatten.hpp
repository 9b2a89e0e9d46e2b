/// @file flatten.hpp
/// sft::nn::Flatten: merges a range of dimensions into one, as torch.nn.Flatten. A view: no copy.
#pragma once

#include <sft/error.hpp>
#include <sft/nn/module.hpp>

#include <fmt/format.h>

#include <array>
#include <string>

namespace sft::nn {

/// Flattens dimensions start_dim..end_dim (inclusive; negative counts from the end) into one, as
/// torch.nn.Flatten(start_dim=1, end_dim=-1): [N, C, H, W] -> [N, C*H*W] by default. The output
/// and the input gradient share storage with their sources (Tensor::reshape), as torch's view.
/// A rank-0 input counts as rank 1 (torch's rule) and gives [1].
template <class T>
class Flatten : public Module<T> {
public:
    /// Dimensions are checked against each input's rank in forward().
    explicit Flatten(int start_dim = 1, int end_dim = -1) noexcept : start_(start_dim), end_(end_dim) {}

    /// "Flatten", as error messages name this layer.
    std::string type_name() const override { return "Flatten"; }
    /// The first flattened dimension (negative: counted from the end).
    int start_dim() const noexcept { return start_; }
    /// The last flattened dimension, inclusive (negative: counted from the end).
    int end_dim() const noexcept { return end_; }

    /// The input seen with dimensions start..end merged. Throws sft::Error when the input is
    /// undefined, a dimension is out of range for its rank, or start_dim comes after end_dim.
    Tensor<T> forward(const Tensor<T>& input) override {
        if (!input.defined())
            throw Error(ErrorKind::invalid_argument, fmt::format("{}: forward() given an undefined tensor", this->label()));
        const Shape& in = input.shape();
        const int rank = static_cast<int>(in.rank());
        const int wrap = rank == 0 ? 1 : rank;  // torch wraps dims of a 0-d tensor as if it had rank 1
        const int s = start_ < 0 ? start_ + wrap : start_;
        const int e = end_ < 0 ? end_ + wrap : end_;
        if (s < 0 || s >= wrap || e < 0 || e >= wrap)
            throw Error(ErrorKind::shape, fmt::format("{}: start_dim {}, end_dim {} out of range for input {} (dims in [{}, {}])",
                                                      this->label(), start_, end_, in.str(), -wrap, wrap - 1));
        if (s > e)
            throw Error(ErrorKind::shape, fmt::format("{}: start_dim {} comes after end_dim {} for input {}", this->label(), start_,
                                                      end_, in.str()));
        // The output's dimensions, built in place (no heap allocation in a training step).
        std::array<std::size_t, Shape::max_rank> dims{};
        std::size_t out_rank = 0;
        if (rank == 0) dims[out_rank++] = 1;
        else {
            std::size_t merged = 1;
            for (int d = 0; d < rank; ++d) {
                if (d < s || d > e) dims[out_rank++] = in[static_cast<std::size_t>(d)];
                else {
                    merged *= in[static_cast<std::size_t>(d)];
                    if (d == e) dims[out_rank++] = merged;
                }
            }
        }
        Shape out_shape = in;  // rank(in) >= out_rank: reshape to the first out_rank dimensions
        switch (out_rank) {
            case 1: out_shape = Shape{dims[0]}; break;
            case 2: out_shape = Shape{dims[0], dims[1]}; break;
            case 3: out_shape = Shape{dims[0], dims[1], dims[2]}; break;
            default: out_shape = Shape{dims[0], dims[1], dims[2], dims[3]}; break;
        }
        in_shape_ = in;
        out_shape_ = out_shape;
        forwarded_ = true;
        return input.reshape(out_shape_);
    }

    /// The gradient seen with the input's shape (a view of grad_output). Throws sft::Error before
    /// any forward or when grad_output's shape is not the last output's.
    Tensor<T> backward(const Tensor<T>& grad_output, bool need_input_grad = true) override {
        if (!forwarded_) this->throw_no_forward();
        if (!grad_output.defined())
            throw Error(ErrorKind::shape, fmt::format("{}: backward() given an undefined grad_output, expected {}", this->label(),
                                                      out_shape_.str()));
        this->check_grad_shape(grad_output, out_shape_);
        forwarded_ = false;  // as the other layers: one backward per forward
        if (!need_input_grad) return Tensor<T>();
        return grad_output.reshape(in_shape_);
    }

    void release_saved() noexcept override { forwarded_ = false; }

private:
    int start_, end_;
    bool forwarded_ = false;
    Shape in_shape_, out_shape_;
};

}  // namespace sft::nn
