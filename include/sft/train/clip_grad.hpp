/// @file clip_grad.hpp
/// Gradient norms and clipping by global norm, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <sft/error.hpp>
#include <sft/nn/module.hpp>

#include <fmt/format.h>

#include <cmath>
#include <vector>

namespace sft::train {

/// The global L2 norm sqrt(sum over parameters of sum(grad^2)) of the gradients of the
/// parameters that require one (frozen ones are skipped), accumulated in double.
template <class T>
double grad_norm(const std::vector<nn::Parameter<T>*>& params) noexcept {
    double sum = 0.0;
    for (const auto* p : params) {
        if (!p->requires_grad()) continue;
        for (const T g : p->grad()) sum += static_cast<double>(g) * static_cast<double>(g);
    }
    return std::sqrt(sum);
}

/// Scales the gradients of the parameters that require one so that their global L2 norm is at
/// most `max_norm`, exactly as torch.nn.utils.clip_grad_norm_(params, max_norm) (norm_type 2):
///   total_norm = sqrt(sum of squared gradients); coef = max_norm / (total_norm + 1e-6);
///   if coef < 1 every gradient is multiplied by coef.
/// Returns total_norm, the norm before clipping. Throws sft::Error (kind invalid_argument) when
/// max_norm is not positive, (kind numeric) when the norm is not finite (gradients left unchanged;
/// torch's error_if_nonfinite=True).
template <class T>
double clip_grad_norm_(const std::vector<nn::Parameter<T>*>& params, double max_norm) {
    if (!(max_norm > 0.0)) throw Error(ErrorKind::invalid_argument, fmt::format("clip_grad_norm_: max_norm {} must be > 0", max_norm));
    const double total = grad_norm(params);
    if (!std::isfinite(total))
        throw Error(ErrorKind::numeric, fmt::format("clip_grad_norm_: the total gradient norm is {}", total));
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        const T c = static_cast<T>(coef);
        for (auto* p : params) {
            if (!p->requires_grad()) continue;
            for (T& g : p->grad()) g *= c;
        }
    }
    return total;
}

}  // namespace sft::train
