/// @file loss.hpp
/// sft::loss::Loss, the interface of every loss (what the Trainer drives), and Reduction.
#pragma once

#include <sft/tensor.hpp>

#include <string>

namespace sft::loss {

/// How the per-element losses are reduced, as PyTorch's `reduction` argument.
enum class Reduction {
    none,  ///< keep them: forward() returns their sum, losses() holds them
    mean,  ///< their (weighted) mean: PyTorch's default
    sum,   ///< their sum
};

/// "none", "mean", "sum".
inline const char* reduction_name(Reduction r) noexcept {
    switch (r) {
        case Reduction::none: return "none";
        case Reduction::sum: return "sum";
        default: return "mean";
    }
}

/// A loss of predictions Tensor<T> against targets Tensor<Target>:
///   T loss = criterion.forward(prediction, target);  model.backward(criterion.backward());
/// forward() computes the loss and caches dL/dprediction; backward() returns it with the shape of
/// the last prediction. With need_grad false forward() computes the loss only (evaluation).
template <class T, class Target>
class Loss {
public:
    /// The element type of the targets (std::int64_t class indices, or T).
    using target_type = Target;

    Loss() = default;
    Loss(const Loss&) = default;
    Loss& operator=(const Loss&) = default;
    Loss(Loss&&) noexcept = default;
    Loss& operator=(Loss&&) noexcept = default;
    virtual ~Loss() = default;

    /// The reduced loss of `prediction` against `target`. Overrides repeat the default argument.
    /// Throws sft::Error when the shapes or the targets are invalid.
    virtual T forward(const Tensor<T>& prediction, const Tensor<Target>& target, bool need_grad = true) = 0;
    /// dL/dprediction of the last forward(), shape of its prediction. Throws sft::Error (kind state)
    /// without a preceding forward() with need_grad.
    virtual Tensor<T> backward() = 0;
    /// The loss's name in messages ("CrossEntropy").
    virtual std::string type_name() const = 0;
};

}  // namespace sft::loss
