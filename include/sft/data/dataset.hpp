/// @file dataset.hpp
/// sft::data::TensorDataset<T>: inputs x [N, ...] and class labels y [N], as
/// torch.utils.data.TensorDataset(x, y), plus subset() to gather rows by index.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/error.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sft::data {

/// A labelled set held in two tensors: inputs x [N, ...] (rank 1 to 4) and class indices
/// y [N] (std::int64_t). The dataset shares their storage (Tensor is a handle): it copies nothing.
template <class T>
class TensorDataset {
public:
    /// An empty dataset (size() is 0).
    TensorDataset() = default;

    /// Wraps x [N, ...] and y [N]. Throws sft::Error (kind shape) when x has rank 0, y is not of
    /// rank 1, or their first dimensions differ; the message names both shapes.
    TensorDataset(Tensor<T> x, Tensor<std::int64_t> y) : x_(std::move(x)), y_(std::move(y)) {
        if (x_.rank() == 0 || y_.rank() != 1 || x_.shape()[0] != y_.shape()[0])
            throw Error(ErrorKind::shape, fmt::format("TensorDataset: x {} and y {} must be [N, ...] and [N] with the same N",
                                                      x_.shape().str(), y_.shape().str()));
    }

    /// Number of samples N.
    std::size_t size() const noexcept { return x_.rank() == 0 ? 0 : x_.shape()[0]; }
    bool empty() const noexcept { return size() == 0; }
    /// The inputs [N, ...] (shared, not copied).
    const Tensor<T>& x() const noexcept { return x_; }
    /// The labels [N] (shared, not copied).
    const Tensor<std::int64_t>& y() const noexcept { return y_; }
    /// Elements per sample: the product of x's dimensions after the first.
    std::size_t sample_numel() const noexcept { return size() == 0 ? 0 : x_.numel() / size(); }
    /// The shape of one batch of `n` samples: x's shape with its first dimension set to n.
    Shape batch_shape(std::size_t n) const noexcept {
        Shape s = x_.shape();
        s[0] = n;
        return s;
    }

    /// The number of samples of each label 0..max(y) (negative labels are not counted).
    std::vector<std::size_t> class_counts() const {
        std::vector<std::size_t> counts;
        for (std::size_t i = 0; i < size(); ++i) {
            const std::int64_t c = y_[i];
            if (c < 0) continue;
            if (static_cast<std::size_t>(c) >= counts.size()) counts.resize(static_cast<std::size_t>(c) + 1, 0);
            ++counts[static_cast<std::size_t>(c)];
        }
        return counts;
    }

private:
    Tensor<T> x_;
    Tensor<std::int64_t> y_;
};

/// Bytes of rows one task of gather_rows copies at least: below this a gather runs on the
/// calling thread alone (a batch of 32 Fashion-MNIST images is 100 KB: two tasks).
inline constexpr std::size_t gather_grain_bytes = 64 * 1024;

/// Copies rows `x[indices[k]]` into out_x[k] and `y[indices[k]]` into out_y[k] for k < count.
/// out_x must hold at least count samples of data's sample size and out_y count labels; indices
/// must be < data.size() (kernels-level: checked by the callers). Large gathers run on sft's
/// thread pool in ranges of rows cut from the sizes alone; every row is a plain copy, so the
/// result is the same whatever the thread count. Allocates nothing.
template <class T>
void gather_rows(const TensorDataset<T>& data, const std::size_t* indices, std::size_t count, T* out_x,
                 std::int64_t* out_y) noexcept {
    const std::size_t row = data.sample_numel();
    const T* src = data.x().data();
    const std::int64_t* labels = data.y().data();
    const std::size_t grain = std::max<std::size_t>(1, gather_grain_bytes / std::max<std::size_t>(1, row * sizeof(T)));
    sft::detail::parallel_for(count, grain, [&](std::size_t begin, std::size_t end) {
        for (std::size_t k = begin; k < end; ++k) {
            std::memcpy(out_x + k * row, src + indices[k] * row, row * sizeof(T));
            out_y[k] = labels[indices[k]];
        }
    });
}

/// A new dataset holding copies of the samples `indices` of `data`, in that order.
/// Throws sft::Error (kind invalid_argument) when an index is out of range.
template <class T>
TensorDataset<T> subset(const TensorDataset<T>& data, const std::vector<std::size_t>& indices) {
    for (std::size_t i : indices)
        if (i >= data.size())
            throw Error(ErrorKind::invalid_argument, fmt::format("subset: index {} out of range for a dataset of {} samples", i, data.size()));
    if (indices.empty()) {
        if (data.empty()) return {};
        // x [0, ...] keeps the sample shape for the caller's shape checks.
        return TensorDataset<T>(Tensor<T>(data.batch_shape(0)), Tensor<std::int64_t>(Shape{0}));
    }
    Tensor<T> x = Tensor<T>::empty(data.batch_shape(indices.size()));
    Tensor<std::int64_t> y = Tensor<std::int64_t>::empty(Shape{indices.size()});
    gather_rows(data, indices.data(), indices.size(), x.data(), y.data());
    return TensorDataset<T>(std::move(x), std::move(y));
}

}  // namespace sft::data
