/// @file adamw.hpp
/// Fused optimizer update kernels: one pass over a parameter tensor and its gradient and state
/// (p, g, m, v[, v_max] for Adam/AdamW; p, g[, buf] for SGD), each element read and written once;
/// and the sum of squares of gradient clipping (add_squares). The optimizers run them on ranges
/// of their parameters, threaded (optim/detail/flat_pass.hpp).
/// Scalar references in sft::kernels::reference; the SIMD versions (xsimd) are chosen at compile
/// time through kernels/simd.hpp. Internal: namespace sft::kernels. Kernels never throw.
///
/// The element operations follow torch 1.13's single-tensor code paths (torch/optim/adamw.py,
/// adam.py, sgd.py) operation by operation, with the Python-side scalars computed in double and
/// rounded to T once, as torch does when it hands them to its float kernels:
///   AdamW: p = p * (1 - lr wd)                          param.mul_(1 - lr * weight_decay)
///   Adam:  g = g + wd p                                 grad.add(param, alpha=weight_decay)
///          m = m b1 + (1 - b1) g                        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
///          v = v b2 + (1 - b2) g g                      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
///          v_max = max(v_max, v)          (amsgrad)     torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=...)
///          d = sqrt(v or v_max) / sqrt(1 - b2^t) + eps  (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
///          p = p + (-lr / (1 - b1^t)) m / d             param.addcdiv_(exp_avg, denom, value=-step_size)
/// The SIMD and scalar versions perform the same IEEE operations in the same order (no FMA is
/// written), so they agree to the last bit unless the compiler contracts a*b+c on its own.
///
/// One deliberate difference from torch: a moment (m, v, SGD's momentum buffer; v_max is a max of
/// v) whose magnitude falls below the smallest normal T (1.18e-38 for float) is stored as 0, and
/// that 0 is what the step uses. Where a gradient stays 0 (a dead ReLU unit, an input pixel that
/// is always 0), m decays by beta1 every step and passes through the subnormal range for about 150
/// steps before it reaches 0; v by beta2 for about 16,000. On x86 every operation on a subnormal
/// takes a microcode assist of about 100 cycles: in the reference MLP, 7% of fc1's and 14% of
/// fc2's weights had a subnormal m after 2 epochs, AdamW's step took 3-4x as long in the 4th epoch
/// as in the 1st, and an epoch at batch 32 (1,875 steps) 1.4-1.8x as long (benchmarks/RESULTS.md).
/// The step such a moment contributes is below lr * 1.2e-38 / eps, far under a float weight's
/// resolution: after 3 epochs of that MLP, 2 of its 535,818 parameters differed from those of the
/// unflushed rule, by one rounding.
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace sft::kernels {

/// The per-tensor scalars of one Adam or AdamW step, rounded to T (see the file comment).
template <class T>
struct AdamCoefficients {
    T decay = T(1);                   ///< p <- p * decay first: 1 - lr wd for AdamW, 1 for Adam
    T l2 = T(0);                      ///< g <- g + l2 p: the weight decay for Adam, 0 for AdamW
    T beta1 = T(0.9);                 ///< first-moment decay
    T one_minus_beta1 = T(0.1);       ///< 1 - beta1, formed in double
    T beta2 = T(0.999);               ///< second-moment decay
    T one_minus_beta2 = T(0.001);     ///< 1 - beta2, formed in double
    T bias_correction2_sqrt = T(1);   ///< sqrt(1 - beta2^t)
    T eps = T(1e-8);                  ///< added to the denominator after the bias correction
    T neg_step_size = T(0);           ///< -lr / (1 - beta1^t)
};

/// The coefficients of step t (1-based) as torch 1.13 forms them in Python (double):
/// decoupled true for AdamW (p *= 1 - lr wd), false for Adam (g += wd p).
template <class T>
AdamCoefficients<T> adam_coefficients(double lr, double beta1, double beta2, double eps, double weight_decay,
                                      bool decoupled, double t) noexcept {
    AdamCoefficients<T> c;
    c.decay = static_cast<T>(decoupled ? 1.0 - lr * weight_decay : 1.0);
    c.l2 = static_cast<T>(decoupled ? 0.0 : weight_decay);
    c.beta1 = static_cast<T>(beta1);
    c.one_minus_beta1 = static_cast<T>(1.0 - beta1);
    c.beta2 = static_cast<T>(beta2);
    c.one_minus_beta2 = static_cast<T>(1.0 - beta2);
    const double bias_correction1 = 1.0 - std::pow(beta1, t);
    const double bias_correction2 = 1.0 - std::pow(beta2, t);
    c.bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    c.eps = static_cast<T>(eps);
    c.neg_step_size = static_cast<T>(-(lr / bias_correction1));
    return c;
}

/// The per-tensor scalars of one SGD step, rounded to T (torch.optim.SGD, torch 1.13).
template <class T>
struct SgdCoefficients {
    T neg_lr = T(0);               ///< -lr
    T weight_decay = T(0);         ///< g <- g + wd p when nonzero
    T momentum = T(0);             ///< buf <- buf momentum + (1 - dampening) g when nonzero
    T one_minus_dampening = T(1);  ///< 1 - dampening, formed in double
    bool nesterov = false;         ///< step along g + momentum buf instead of buf
};

namespace reference {

/// x, or 0 when |x| is below the smallest normal T (a subnormal; see the file comment). NaN stays.
template <class T>
T flush_subnormal(T x) noexcept {
    return std::abs(x) < std::numeric_limits<T>::min() ? T(0) : x;
}

/// One Adam/AdamW step over n elements: p, m, v (and v_max when not nullptr, amsgrad) are updated
/// in place from g, see the file comment. No pointer may alias another.
template <class T>
void adam_update(T* p, const T* g, T* m, T* v, T* v_max, std::size_t n, const AdamCoefficients<T>& c) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        T gi = g[i];
        if (c.l2 != T(0)) gi = gi + c.l2 * p[i];                        // Adam: L2 penalty into the gradient
        const T pi = p[i] * c.decay;                                    // AdamW: decoupled decay (x 1 for Adam)
        const T mi = flush_subnormal(m[i] * c.beta1 + c.one_minus_beta1 * gi);       // first moment
        const T vi = flush_subnormal(v[i] * c.beta2 + c.one_minus_beta2 * gi * gi);  // second moment
        m[i] = mi;
        v[i] = vi;
        T vhat = vi;
        if (v_max) vhat = v_max[i] = std::max(v_max[i], vi);            // amsgrad: the running max
        const T denom = std::sqrt(vhat) / c.bias_correction2_sqrt + c.eps;
        p[i] = pi + c.neg_step_size * mi / denom;                       // bias-corrected step
    }
}

/// One SGD step over n elements (torch.optim.SGD): p is updated from g; buf (momentum buffer,
/// nullptr when momentum is 0) is set to the decayed gradient on the first step (`first`), as
/// torch's torch.clone(d_p), and updated by momentum and dampening afterwards.
template <class T>
void sgd_update(T* p, const T* g, T* buf, std::size_t n, const SgdCoefficients<T>& c, bool first) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        T d = g[i];
        if (c.weight_decay != T(0)) d = d + c.weight_decay * p[i];      // d_p.add(param, alpha=weight_decay)
        if (buf) {
            const T b = flush_subnormal(first ? d : buf[i] * c.momentum + c.one_minus_dampening * d);
            buf[i] = b;
            d = c.nesterov ? d + c.momentum * b : b;                    // nesterov: d_p.add(buf, alpha=momentum)
        }
        p[i] = p[i] + c.neg_lr * d;                                     // param.add_(d_p, alpha=-lr)
    }
}

}  // namespace reference

#if SFT_KERNELS_SIMD
namespace optim_detail {

/// reference::flush_subnormal on every lane.
template <class B>
B flush_subnormal(const B& x) noexcept {
    using T = typename B::value_type;
    return xsimd::select(xsimd::abs(x) < B(std::numeric_limits<T>::min()), B(T(0)), x);
}

template <class T, bool L2, bool Amsgrad>
void adam_update_simd(T* p, const T* g, T* m, T* v, T* v_max, std::size_t n, const AdamCoefficients<T>& c) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const B l2(c.l2), decay(c.decay), b1(c.beta1), omb1(c.one_minus_beta1), b2(c.beta2), omb2(c.one_minus_beta2),
        bc2(c.bias_correction2_sqrt), eps(c.eps), nss(c.neg_step_size);
    // The SIMD body bounded by n / w * w (not i + w <= n: GCC warns on the tail for a constant n).
    const std::size_t body = n / w * w;
    std::size_t i = 0;
    for (; i < body; i += w) {
        // p, m and v are fetched for writing (PREFETCHW) 1 KiB ahead: a line the other core has
        // read (the weights, after a forward whose threads each read all of them: Sequential's
        // row-parallel runs) then comes exclusive at once, rather than shared at the load and
        // upgraded at the store. Measured in the reference step at 2 threads, row-parallel runs on
        // against off (benchmarks/row_parallel_ab): the update took 1.28-1.29x the time without
        // these prefetches, 1.02-1.05x with them; at 1 thread and without row-parallel runs the
        // step did not change (step_ab.sh 1.00).
        prefetch_ahead<true>(p + i, 1024);
        prefetch_ahead<true>(m + i, 1024);
        prefetch_ahead<true>(v + i, 1024);
        const B pv = B::load_unaligned(p + i);
        B gi = B::load_unaligned(g + i);
        if constexpr (L2) gi = gi + l2 * pv;
        const B pi = pv * decay;
        const B mi = flush_subnormal(B::load_unaligned(m + i) * b1 + omb1 * gi);
        const B vi = flush_subnormal(B::load_unaligned(v + i) * b2 + omb2 * gi * gi);
        mi.store_unaligned(m + i);
        vi.store_unaligned(v + i);
        B vhat = vi;
        if constexpr (Amsgrad) {
            vhat = xsimd::max(B::load_unaligned(v_max + i), vi);
            vhat.store_unaligned(v_max + i);
        }
        const B denom = xsimd::sqrt(vhat) / bc2 + eps;
        (pi + nss * mi / denom).store_unaligned(p + i);
    }
    if (i < n) reference::adam_update(p + i, g + i, m + i, v + i, Amsgrad ? v_max + i : nullptr, n - i, c);
}

template <class T, bool Decay, int Mode>  // Mode: 0 no momentum, 1 momentum, 2 nesterov
void sgd_update_simd(T* p, const T* g, T* buf, std::size_t n, const SgdCoefficients<T>& c, bool first) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const B wd(c.weight_decay), mom(c.momentum), omd(c.one_minus_dampening), nlr(c.neg_lr);
    // The SIMD body bounded by n / w * w (not i + w <= n: GCC warns on the tail for a constant n).
    const std::size_t body = n / w * w;
    std::size_t i = 0;
    for (; i < body; i += w) {
        const B pv = B::load_unaligned(p + i);
        B d = B::load_unaligned(g + i);
        if constexpr (Decay) d = d + wd * pv;
        if constexpr (Mode != 0) {
            const B b = flush_subnormal(first ? d : B::load_unaligned(buf + i) * mom + omd * d);
            b.store_unaligned(buf + i);
            d = Mode == 2 ? d + mom * b : b;
        }
        (pv + nlr * d).store_unaligned(p + i);
    }
    if (i < n) reference::sgd_update(p + i, g + i, Mode != 0 ? buf + i : nullptr, n - i, c, first);
}

}  // namespace optim_detail
#endif

/// One Adam/AdamW step over n elements, fused: p, m, v (and v_max when not nullptr, amsgrad) are
/// updated in place from g, see the file comment. Pointers need no alignment; none may alias
/// another. Matches reference::adam_update to the last bit (same operations, same order).
template <class T>
void adam_update(T* p, const T* g, T* m, T* v, T* v_max, std::size_t n, const AdamCoefficients<T>& c) noexcept {
#if SFT_KERNELS_SIMD
    const bool l2 = c.l2 != T(0);
    if (l2 && v_max) optim_detail::adam_update_simd<T, true, true>(p, g, m, v, v_max, n, c);
    else if (l2) optim_detail::adam_update_simd<T, true, false>(p, g, m, v, v_max, n, c);
    else if (v_max) optim_detail::adam_update_simd<T, false, true>(p, g, m, v, v_max, n, c);
    else optim_detail::adam_update_simd<T, false, false>(p, g, m, v, v_max, n, c);
#else
    reference::adam_update(p, g, m, v, v_max, n, c);
#endif
}

/// One SGD step over n elements, fused (torch.optim.SGD): p is updated from g; buf is the momentum
/// buffer (nullptr when momentum is 0), initialised to the decayed gradient when `first`.
/// Pointers need no alignment; none may alias another. Matches reference::sgd_update.
template <class T>
void sgd_update(T* p, const T* g, T* buf, std::size_t n, const SgdCoefficients<T>& c, bool first) noexcept {
#if SFT_KERNELS_SIMD
    const bool decay = c.weight_decay != T(0);
    const int mode = buf ? (c.nesterov ? 2 : 1) : 0;
    if (decay) {
        if (mode == 0) optim_detail::sgd_update_simd<T, true, 0>(p, g, buf, n, c, first);
        else if (mode == 1) optim_detail::sgd_update_simd<T, true, 1>(p, g, buf, n, c, first);
        else optim_detail::sgd_update_simd<T, true, 2>(p, g, buf, n, c, first);
    } else {
        if (mode == 0) optim_detail::sgd_update_simd<T, false, 0>(p, g, buf, n, c, first);
        else if (mode == 1) optim_detail::sgd_update_simd<T, false, 1>(p, g, buf, n, c, first);
        else optim_detail::sgd_update_simd<T, false, 2>(p, g, buf, n, c, first);
    }
#else
    reference::sgd_update(p, g, buf, n, c, first);
#endif
}

/// Lanes of add_squares: independent double accumulators (one AVX-512 register of doubles).
inline constexpr std::size_t square_lanes = 8;

/// acc[i % 8] += double(x[i])^2 for i < n: the sum of squares of a gradient norm, accumulated in
/// double so that a model's millions of terms lose nothing visible in T. Eight independent
/// accumulators let the compiler vectorize without reassociating anything: the result is a fixed
/// function of x and n.
template <class T>
void add_squares(const T* x, std::size_t n, double (&acc)[square_lanes]) noexcept {
    constexpr std::size_t w = square_lanes;
    const std::size_t body = n / w * w;
    std::size_t i = 0;
    for (; i < body; i += w)
        for (std::size_t k = 0; k < w; ++k) {
            const double d = static_cast<double>(x[i + k]);
            acc[k] += d * d;
        }
    for (std::size_t k = 0; i < n; ++i, ++k) {
        const double d = static_cast<double>(x[i]);
        acc[k] += d * d;
    }
}

}  // namespace sft::kernels
