/// @file softmax.hpp
/// Row kernels for softmax and the fused softmax + cross-entropy: log-softmax, the loss and its
/// gradient for one row of logits in one call, while the row is hot in cache.
/// Scalar references in sft::kernels::reference; the SIMD versions (xsimd) are chosen at compile
/// time through kernels/simd.hpp. Internal: namespace sft::kernels. Kernels never throw.
///
/// The cross-entropy of one row x[C] with target y, label smoothing e and class weights w (all 1
/// when absent), as torch.nn.functional.cross_entropy (torch 1.13, LossNLL.cpp):
///   logp_j = x_j - m - log(s),   m = max_k x_k,   s = sum_k exp(x_k - m)    (log-sum-exp with the max)
///   loss   = (1 - e) * w_y * (-logp_y) + (e / C) * sum_k w_k * (-logp_k)
///   dloss/dx_j = a * p_j - (1 - e) * w_y * [j == y] - (e / C) * w_j,   a = (1 - e) * w_y + (e / C) * sum_k w_k
/// The smoothing sum is formed as S_w * log(s) - sum_k w_k (x_k - m): both terms are >= 0 when the
/// weights are, so no cancellation between large numbers (x_k - m <= 0).
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

namespace sft::kernels {

namespace reference {

/// Accumulator type of the scalar references: double, so that they are the accurate side of tests.
template <class T>
using SoftmaxAcc = std::conditional_t<std::is_same_v<T, float>, double, T>;

/// y[n] = softmax(x[n]) with the row max subtracted. y may alias x.
template <class T>
void softmax_row(const T* x, std::size_t n, T* y) noexcept {
    if (n == 0) return;
    T m = x[0];
    for (std::size_t j = 1; j < n; ++j) m = std::max(m, x[j]);
    SoftmaxAcc<T> s = 0;
    for (std::size_t j = 0; j < n; ++j) {
        const T e = std::exp(x[j] - m);
        y[j] = e;
        s += e;
    }
    const T inv = static_cast<T>(SoftmaxAcc<T>(1) / s);
    for (std::size_t j = 0; j < n; ++j) y[j] *= inv;
}

/// Cross-entropy of one row of logits x[n] against class `target` (< n), see the file comment.
/// `class_weight` is w[n] or nullptr (all 1); `weight_sum` is sum_k w_k (n when nullptr).
/// Writes grad[n] = scale * dloss/dx (grad must not alias x) and returns the unscaled row loss.
template <class T>
T softmax_cross_entropy_row(const T* x, std::size_t n, std::size_t target, T smoothing, const T* class_weight,
                            T weight_sum, T scale, T* grad) noexcept {
    SFT_ASSERT(n > 0 && target < n && grad != x);
    T m = x[0];
    for (std::size_t j = 1; j < n; ++j) m = std::max(m, x[j]);
    SoftmaxAcc<T> s = 0, centered = 0;  // sum_k exp(x_k - m), sum_k w_k (x_k - m)
    for (std::size_t j = 0; j < n; ++j) {
        const T d = x[j] - m;
        const T e = std::exp(d);
        grad[j] = e;
        s += e;
        centered += (class_weight ? class_weight[j] : T(1)) * SoftmaxAcc<T>(d);
    }
    const SoftmaxAcc<T> lse = std::log(s);
    const SoftmaxAcc<T> wy = class_weight ? class_weight[target] : T(1);
    const SoftmaxAcc<T> c = SoftmaxAcc<T>(smoothing) / SoftmaxAcc<T>(n);
    const SoftmaxAcc<T> hard = 1 - SoftmaxAcc<T>(smoothing);
    const SoftmaxAcc<T> loss = hard * wy * (lse - SoftmaxAcc<T>(x[target] - m)) + (smoothing != T(0) ? c * (weight_sum * lse - centered) : 0);
    const SoftmaxAcc<T> a = hard * wy + c * weight_sum;
    const SoftmaxAcc<T> inv = 1 / s;
    for (std::size_t j = 0; j < n; ++j) {
        const SoftmaxAcc<T> wj = class_weight ? class_weight[j] : T(1);
        grad[j] = static_cast<T>(scale * (a * grad[j] * inv - c * wj - (j == target ? hard * wy : 0)));
    }
    return static_cast<T>(loss);
}

}  // namespace reference

#if SFT_KERNELS_SIMD
namespace softmax_detail {

/// Max of x[n] (n > 0), lanes then tail.
template <class T>
T row_max(const T* x, std::size_t n) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    std::size_t j = 0;
    T m = x[0];
    if (n >= w) {
        B vm = B::load_unaligned(x);
        for (j = w; j < n / w * w; j += w) vm = xsimd::max(vm, B::load_unaligned(x + j));
        alignas(64) T lanes[w];
        vm.store_aligned(lanes);
        m = lanes[0];
        for (std::size_t l = 1; l < w; ++l) m = std::max(m, lanes[l]);
    }
    for (; j < n; ++j) m = std::max(m, x[j]);
    return m;
}

/// y[j] = exp(x[j] - m); returns sum_j y[j]; also sum_j w_j (x_j - m) into `centered` when asked.
template <class T>
T exp_shifted(const T* x, std::size_t n, T m, T* y, const T* class_weight, bool want_centered, T& centered) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const B vm(m);
    B vs(T(0)), vc(T(0));
    std::size_t j = 0;
    for (const std::size_t body = n / w * w; j < body; j += w) {
        const B d = B::load_unaligned(x + j) - vm;
        const B e = xsimd::exp(d);
        e.store_unaligned(y + j);
        vs += e;
        if (want_centered) vc = class_weight ? xsimd::fma(B::load_unaligned(class_weight + j), d, vc) : vc + d;
    }
    T s = reduce_lanes(vs);
    T cs = want_centered ? reduce_lanes(vc) : T(0);
    for (; j < n; ++j) {
        const T d = x[j] - m;
        const T e = std::exp(d);
        y[j] = e;
        s += e;
        if (want_centered) cs += (class_weight ? class_weight[j] : T(1)) * d;
    }
    centered = cs;
    return s;
}

}  // namespace softmax_detail
#endif

/// y[n] = softmax(x[n]) with the row max subtracted. y may alias x.
template <class T>
void softmax_row(const T* x, std::size_t n, T* y) noexcept {
#if SFT_KERNELS_SIMD
    if (n == 0) return;
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const T m = softmax_detail::row_max(x, n);
    T unused;
    const T s = softmax_detail::exp_shifted(x, n, m, y, static_cast<const T*>(nullptr), false, unused);
    const T inv = T(1) / s;
    const B vinv(inv);
    std::size_t j = 0;
    for (const std::size_t body = n / w * w; j < body; j += w) (B::load_unaligned(y + j) * vinv).store_unaligned(y + j);
    for (; j < n; ++j) y[j] *= inv;
#else
    reference::softmax_row(x, n, y);
#endif
}

/// Cross-entropy of one row of logits x[n] against class `target` (< n), see the file comment:
/// log-softmax, loss and gradient in one call. `class_weight` is w[n] or nullptr (all 1);
/// `weight_sum` is sum_k w_k (n when nullptr). Writes grad[n] = scale * dloss/dx (grad must not
/// alias x) and returns the unscaled row loss. Matches reference::softmax_cross_entropy_row to a
/// few ulps (xsimd::exp against std::exp, lane-wise sums).
template <class T>
T softmax_cross_entropy_row(const T* x, std::size_t n, std::size_t target, T smoothing, const T* class_weight,
                            T weight_sum, T scale, T* grad) noexcept {
#if SFT_KERNELS_SIMD
    SFT_ASSERT(n > 0 && target < n && grad != x);
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const T m = softmax_detail::row_max(x, n);
    T centered = 0;
    const T s = softmax_detail::exp_shifted(x, n, m, grad, class_weight, smoothing != T(0), centered);
    const T lse = std::log(s);
    const T wy = class_weight ? class_weight[target] : T(1);
    const T c = smoothing / static_cast<T>(n);
    const T hard = T(1) - smoothing;
    const T loss = hard * wy * (lse - (x[target] - m)) + (smoothing != T(0) ? c * (weight_sum * lse - centered) : T(0));
    const T inv = T(1) / s;
    const T e_target = grad[target];
    // grad_j = scale * (a p_j - c w_j): the p_j coefficient and the constant folded once.
    const T pa = scale * (hard * wy + c * weight_sum) * inv;
    const T sc = scale * c;
    const B vpa(pa), vsc(sc);
    std::size_t j = 0;
    if (class_weight) {
        for (const std::size_t body = n / w * w; j < body; j += w)
            xsimd::fms(vpa, B::load_unaligned(grad + j), vsc * B::load_unaligned(class_weight + j)).store_unaligned(grad + j);
        for (; j < n; ++j) grad[j] = pa * grad[j] - sc * class_weight[j];
    } else {
        for (const std::size_t body = n / w * w; j < body; j += w) xsimd::fms(vpa, B::load_unaligned(grad + j), vsc).store_unaligned(grad + j);
        for (; j < n; ++j) grad[j] = pa * grad[j] - sc;
    }
    grad[target] = pa * e_target - scale * (c * wy + hard * wy);
    return loss;
#else
    return reference::softmax_cross_entropy_row(x, n, target, smoothing, class_weight, weight_sum, scale, grad);
#endif
}

}  // namespace sft::kernels
