/// @file clip_grad.hpp
/// Gradient norms and clipping by global norm, as torch.nn.utils.clip_grad_norm_. Both passes run
/// on sft's pool over the gradients as one flat array (optim/detail/flat_pass.hpp); the norm is a
/// reduction in a fixed order, so it is bit-identical whatever set_num_threads() says.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/error.hpp>
#include <sft/kernels/adamw.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/nn/module.hpp>
#include <sft/optim/detail/flat_pass.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace sft::train {

namespace detail {

/// The flat space of the gradients of the trainable parameters of `params` (frozen ones take no
/// room): its size, each gradient starting on a cache line (optim::detail::flat_align).
template <class T>
std::size_t grad_space(const std::vector<nn::Parameter<T>*>& params) noexcept {
    std::size_t total = 0;
    for (const auto* p : params)
        if (p->requires_grad()) total = optim::detail::round_up(total + p->grad().numel(), optim::detail::flat_align<T>());
    return total;
}

/// piece(parameter, lo, hi) for each trainable gradient overlapping the flat range [b, e) of
/// grad_space, in order, [lo, hi) in the gradient's own indices. Walks from the first parameter:
/// a pass has at most max_reduce_chunks chunks, so this costs chunks x parameters steps in all
/// and allocates nothing.
template <class T, class Piece>
void for_each_grad_piece(const std::vector<nn::Parameter<T>*>& params, std::size_t b, std::size_t e, Piece&& piece) noexcept {
    std::size_t offset = 0;
    for (auto* p : params) {
        if (offset >= e) break;
        if (!p->requires_grad()) continue;
        const std::size_t n = p->grad().numel();
        const std::size_t lo = b > offset ? b - offset : 0;
        const std::size_t hi = std::min(n, e - offset);
        if (hi > lo) piece(*p, lo, hi);
        offset = optim::detail::round_up(offset + n, optim::detail::flat_align<T>());
    }
}

/// The cut of grad_space: chunks of at least flat_grain elements, at most max_reduce_chunks of
/// them (the partial sums live on the stack), from the size only.
template <class T>
optim::detail::FlatCut grad_cut(std::size_t total) noexcept {
    return optim::detail::FlatCut(total, optim::detail::flat_grain, sft::detail::max_reduce_chunks, optim::detail::flat_align<T>());
}

}  // namespace detail

/// The global L2 norm sqrt(sum over parameters of sum(grad^2)) of the gradients of the
/// parameters that require one (frozen ones are skipped), accumulated in double. Computed on
/// sft's pool: the gradients, as one flat array, are cut into chunks by their total size only;
/// each chunk sums its squares in eight double lanes (kernels::add_squares), and the chunks'
/// sums are added in chunk order, so the result is bit-identical at any thread count.
template <class T>
double grad_norm(const std::vector<nn::Parameter<T>*>& params) noexcept {
    const std::size_t total = detail::grad_space(params);
    const optim::detail::FlatCut cut = detail::grad_cut<T>(total);
    double partial[sft::detail::max_reduce_chunks] = {};
    sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t c) {
        double acc[kernels::square_lanes] = {};
        detail::for_each_grad_piece(params, cut.begin(c), cut.end(c, total), [&](const nn::Parameter<T>& p, std::size_t lo, std::size_t hi) {
            kernels::add_squares(p.grad().data() + lo, hi - lo, acc);
        });
        partial[c] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    });
    double sum = 0.0;
    for (std::size_t c = 0; c < cut.chunks; ++c) sum += partial[c];
    return std::sqrt(sum);
}

/// Scales the gradients of the parameters that require one so that their global L2 norm is at
/// most `max_norm`, exactly as torch.nn.utils.clip_grad_norm_(params, max_norm) (norm_type 2):
///   total_norm = sqrt(sum of squared gradients); coef = max_norm / (total_norm + 1e-6);
///   if coef < 1 every gradient is multiplied by coef.
/// The norm is grad_norm() (deterministic, threaded); the scaling runs on sft's pool too.
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
        const std::size_t space = detail::grad_space(params);
        const optim::detail::FlatCut cut = detail::grad_cut<T>(space);
        sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t k) {
            detail::for_each_grad_piece(params, cut.begin(k), cut.end(k, space), [&](nn::Parameter<T>& p, std::size_t lo, std::size_t hi) {
                kernels::serial::scale(p.grad().data() + lo, c, p.grad().data() + lo, hi - lo);
            });
        });
    }
    return total;
}

}  // namespace sft::train
