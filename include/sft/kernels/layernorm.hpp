/// @file layernorm.hpp
/// Row kernels of layer normalisation over the last dimension, as torch.nn.LayerNorm:
///   forward:  mu = mean(x), var = mean((x - mu)^2) (biased), r = 1 / sqrt(var + eps),
///             xhat = (x - mu) r,  y = xhat * w + b
///   backward: g = dy * w,  dx = r * (g - mean(g) - xhat * mean(g * xhat)),
///             dw += dy * xhat,  db += dy
/// Two passes for the variance (mean first, then squared deviations), which stays accurate when
/// |mu| >> std where the one-pass E[x^2] - mu^2 cancels. Scalar references in
/// sft::kernels::reference; SIMD versions (xsimd) chosen at compile time. Kernels never throw.
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/kernels/simd.hpp>

#include <cmath>
#include <cstddef>
#include <type_traits>

namespace sft::kernels {

namespace reference {

/// Accumulator of the scalar references: double for float, so that they are the accurate side.
template <class T>
using LayerNormAcc = std::conditional_t<std::is_same_v<T, float>, double, T>;

/// Normalises x[n] (n > 0) into y[n] (may alias x) with affine w[n], b[n] (each may be nullptr:
/// no scale, no shift). Stores the row mean and 1/sqrt(var + eps) for backward.
template <class T>
void layernorm_forward_row(const T* x, std::size_t n, const T* w, const T* b, T eps, T* y, T* mean_out, T* rstd_out) noexcept {
    SFT_ASSERT(n > 0);
    LayerNormAcc<T> s = 0;
    for (std::size_t j = 0; j < n; ++j) s += x[j];
    const LayerNormAcc<T> mu = s / LayerNormAcc<T>(n);
    LayerNormAcc<T> v = 0;
    for (std::size_t j = 0; j < n; ++j) v += (x[j] - mu) * (x[j] - mu);
    const LayerNormAcc<T> r = 1 / std::sqrt(v / LayerNormAcc<T>(n) + eps);
    for (std::size_t j = 0; j < n; ++j) {
        const LayerNormAcc<T> xh = (x[j] - mu) * r;
        y[j] = static_cast<T>(xh * (w ? w[j] : T(1)) + (b ? b[j] : T(0)));
    }
    *mean_out = static_cast<T>(mu);
    *rstd_out = static_cast<T>(r);
}

/// Backward of one row given dy[n], the forward input x[n] and its mean and rstd. Writes dx[n]
/// (if not nullptr; must not alias dy or x) and accumulates dw[n] += dy * xhat, db[n] += dy (each if
/// not nullptr). w is the weight (nullptr: no affine).
template <class T>
void layernorm_backward_row(const T* dy, const T* x, std::size_t n, T mean, T rstd, const T* w, T* dx, T* dw, T* db) noexcept {
    SFT_ASSERT(n > 0);
    if (dx) {
        LayerNormAcc<T> sg = 0, sgx = 0;
        for (std::size_t j = 0; j < n; ++j) {
            const LayerNormAcc<T> g = LayerNormAcc<T>(dy[j]) * (w ? w[j] : T(1));
            sg += g;
            sgx += g * (LayerNormAcc<T>(x[j]) - mean) * rstd;
        }
        const LayerNormAcc<T> mg = sg / LayerNormAcc<T>(n), mgx = sgx / LayerNormAcc<T>(n);
        for (std::size_t j = 0; j < n; ++j) {
            const LayerNormAcc<T> g = LayerNormAcc<T>(dy[j]) * (w ? w[j] : T(1));
            const LayerNormAcc<T> xh = (LayerNormAcc<T>(x[j]) - mean) * rstd;
            dx[j] = static_cast<T>(rstd * (g - mg - xh * mgx));
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        if (dw) dw[j] += static_cast<T>(dy[j] * ((LayerNormAcc<T>(x[j]) - mean) * rstd));
        if (db) db[j] += dy[j];
    }
}

}  // namespace reference

/// Normalises x[n] (n > 0) into y[n] (may alias x) with affine w[n], b[n] (each may be nullptr).
/// Stores the row mean and 1/sqrt(var + eps). Matches the reference to rounding (lane-wise sums).
template <class T>
void layernorm_forward_row(const T* x, std::size_t n, const T* w, const T* b, T eps, T* y, T* mean_out, T* rstd_out) noexcept {
#if SFT_KERNELS_SIMD
    SFT_ASSERT(n > 0);
    using B = Batch<T>;
    constexpr std::size_t lanes = B::size;
    std::size_t j = 0;
    B vs(T(0));
    for (; j < n / lanes * lanes; j += lanes) vs += B::load_unaligned(x + j);
    T s = reduce_lanes(vs);
    for (; j < n; ++j) s += x[j];
    const T mu = s / static_cast<T>(n);
    const B vmu(mu);
    B vv(T(0));
    for (j = 0; j < n / lanes * lanes; j += lanes) {
        const B d = B::load_unaligned(x + j) - vmu;
        vv = xsimd::fma(d, d, vv);
    }
    T v = reduce_lanes(vv);
    for (; j < n; ++j) v += (x[j] - mu) * (x[j] - mu);
    const T r = T(1) / std::sqrt(v / static_cast<T>(n) + eps);
    const B vr(r);
    for (j = 0; j < n / lanes * lanes; j += lanes) {
        B out = (B::load_unaligned(x + j) - vmu) * vr;
        if (w) out *= B::load_unaligned(w + j);
        if (b) out += B::load_unaligned(b + j);
        out.store_unaligned(y + j);
    }
    for (; j < n; ++j) y[j] = (x[j] - mu) * r * (w ? w[j] : T(1)) + (b ? b[j] : T(0));
    *mean_out = mu;
    *rstd_out = r;
#else
    reference::layernorm_forward_row(x, n, w, b, eps, y, mean_out, rstd_out);
#endif
}

/// Backward of one row given dy[n], the forward input x[n] and its mean and rstd. Writes dx[n]
/// (if not nullptr; must not alias dy or x) and accumulates dw[n] += dy * xhat, db[n] += dy (each if
/// not nullptr). w is the weight (nullptr: no affine).
template <class T>
void layernorm_backward_row(const T* dy, const T* x, std::size_t n, T mean, T rstd, const T* w, T* dx, T* dw, T* db) noexcept {
#if SFT_KERNELS_SIMD
    SFT_ASSERT(n > 0);
    using B = Batch<T>;
    constexpr std::size_t lanes = B::size;
    const B vmu(mean), vr(rstd);
    std::size_t j = 0;
    if (dx) {
        B vsg(T(0)), vsgx(T(0));
        for (; j < n / lanes * lanes; j += lanes) {
            B g = B::load_unaligned(dy + j);
            if (w) g *= B::load_unaligned(w + j);
            vsg += g;
            vsgx = xsimd::fma(g, (B::load_unaligned(x + j) - vmu) * vr, vsgx);
        }
        T sg = reduce_lanes(vsg), sgx = reduce_lanes(vsgx);
        for (; j < n; ++j) {
            const T g = dy[j] * (w ? w[j] : T(1));
            sg += g;
            sgx += g * ((x[j] - mean) * rstd);
        }
        const T mg = sg / static_cast<T>(n), mgx = sgx / static_cast<T>(n);
        const B vmg(mg), vmgx(mgx);
        for (j = 0; j < n / lanes * lanes; j += lanes) {
            B g = B::load_unaligned(dy + j);
            if (w) g *= B::load_unaligned(w + j);
            const B xh = (B::load_unaligned(x + j) - vmu) * vr;
            (vr * (g - vmg - xh * vmgx)).store_unaligned(dx + j);
        }
        for (; j < n; ++j) {
            const T g = dy[j] * (w ? w[j] : T(1));
            const T xh = (x[j] - mean) * rstd;
            dx[j] = rstd * (g - mg - xh * mgx);
        }
    }
    if (dw || db) {
        for (j = 0; j < n / lanes * lanes; j += lanes) {
            const B d = B::load_unaligned(dy + j);
            if (dw) xsimd::fma(d, (B::load_unaligned(x + j) - vmu) * vr, B::load_unaligned(dw + j)).store_unaligned(dw + j);
            if (db) (B::load_unaligned(db + j) + d).store_unaligned(db + j);
        }
        for (; j < n; ++j) {
            if (dw) dw[j] += dy[j] * ((x[j] - mean) * rstd);
            if (db) db[j] += dy[j];
        }
    }
#else
    reference::layernorm_backward_row(dy, x, n, mean, rstd, w, dx, dw, db);
#endif
}

namespace serial {
/// The parameter gradients of layer normalisation for the columns j < cols of [rows, *] matrices
/// with leading dimension ld: dw[j] += sum_r dy[r, j] * xhat[r, j], db[j] += sum_r dy[r, j], rows in
/// order, with the operations of layernorm_backward_row (so the results equal its per-row calls
/// bit for bit). mean and rstd hold one value per row; dw or db may be nullptr.
template <class T>
void layernorm_backward_params(const T* dy, const T* x, std::size_t rows, std::size_t cols, std::size_t ld, const T* mean,
                               const T* rstd, T* dw, T* db) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* d = dy + r * ld;
        const T* xr = x + r * ld;
        std::size_t j = 0;
#if SFT_KERNELS_SIMD
        using B = Batch<T>;
        constexpr std::size_t lanes = B::size;
        const B vmu(mean[r]), vr(rstd[r]);
        for (; j < cols / lanes * lanes; j += lanes) {
            const B g = B::load_unaligned(d + j);
            if (dw) xsimd::fma(g, (B::load_unaligned(xr + j) - vmu) * vr, B::load_unaligned(dw + j)).store_unaligned(dw + j);
            if (db) (B::load_unaligned(db + j) + g).store_unaligned(db + j);
        }
        for (; j < cols; ++j) {
            if (dw) dw[j] += d[j] * ((xr[j] - mean[r]) * rstd[r]);
            if (db) db[j] += d[j];
        }
#else
        using Acc = reference::LayerNormAcc<T>;
        for (; j < cols; ++j) {
            if (dw) dw[j] += static_cast<T>(d[j] * ((Acc(xr[j]) - mean[r]) * rstd[r]));
            if (db) db[j] += d[j];
        }
#endif
    }
}
}  // namespace serial

/// The parameter gradients of layer normalisation over rows of n elements: dw[j] += sum_r dy[r, j]
/// * xhat[r, j] and db[j] += sum_r dy[r, j] (each may be nullptr), xhat = (x - mean[r]) * rstd[r].
/// Threaded over blocks of columns (parallel_col_blocks): each column is summed by one task in
/// row order, as per-row layernorm_backward_row calls do, so the result is bit-identical to them
/// for every thread count.
template <class T>
void layernorm_backward_params(const T* dy, const T* x, std::size_t rows, std::size_t n, const T* mean, const T* rstd, T* dw,
                               T* db) noexcept {
    if (!dw && !db) return;
    parallel_col_blocks(rows, n, [=](std::size_t c0, std::size_t c1) {
        serial::layernorm_backward_params(dy + c0, x + c0, rows, c1 - c0, n, mean, rstd, dw ? dw + c0 : nullptr, db ? db + c0 : nullptr);
    });
}

}  // namespace sft::kernels
