/// @file activation.hpp
/// Activation kernels, forward and backward, on raw contiguous memory: ReLU, GELU (exact, with
/// erf, and the tanh approximation), Tanh and Sigmoid. Scalar references in
/// sft::kernels::reference; the xsimd versions are chosen at compile time through
/// kernels/simd.hpp and finish the tail that is shorter than a batch with the reference.
/// Pointers need no alignment; outputs may alias inputs element for element (in place). Large
/// arrays run on sft's thread pool in ranges aligned to the SIMD width (kernels::parallel_ranges),
/// so results do not depend on the number of threads.
/// Internal: namespace sft::kernels. Kernels never throw.
///
/// Formulas, as PyTorch 1.13's CPU kernels (aten/src/ATen/native/cpu/Activation.cpp,
/// UnaryOpsKernel.cpp):
///   relu(x)      = x < 0 ? 0 : x (NaN passes through);   d/dx from the output: y > 0 ? dy : 0
///   gelu(x)      = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
///   gelu'(x)     = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
///   gelu_tanh(x) = 0.5 x (1 + tanh(u)),   u = sqrt(2 / pi) (x + 0.044715 x^3)
///   gelu_tanh'(x)= 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
///   tanh'        = 1 - y^2 from the output y;   sigmoid(x) = 1 / (1 + exp(-x)),  sigmoid' = y (1 - y)
///
/// Accuracy of the SIMD path against the references (std::erf, std::exp, std::tanh), measured
/// with xsimd 8.1 on AVX-512 over [-6, 6] (erf) and [-25, 25] (tanh): xsimd::exp <= 1.5 ulp
/// (float results below 2^-126, for x < -87.3, flush to 0), xsimd::tanh <= 1.3 ulp, xsimd::erf
/// <= 2.3 ulp in float but up to 68 ulp (7.5e-15 absolute) in double. The tests allow
/// 16 eps (float) and 512 eps (double) relative to max(1, |value|).
#pragma once

#include <sft/config.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/kernels/simd.hpp>

#include <cmath>
#include <cstddef>

namespace sft::kernels {

namespace activation_constants {
/// 1 / sqrt(2): erf's argument scale in gelu.
inline constexpr long double sqrt1_2 = 0.707106781186547524400844362104849039L;
/// 1 / sqrt(2 pi): the normal density's factor in gelu'.
inline constexpr long double inv_sqrt_2pi = 0.398942280401432677939946059934381868L;
/// sqrt(2 / pi): the tanh approximation's scale.
inline constexpr long double sqrt_2_over_pi = 0.797884560802865355879892119868763737L;
/// The cubic coefficient of the tanh approximation (Hendrycks and Gimpel, 2016).
inline constexpr long double gelu_kappa = 0.044715L;
}  // namespace activation_constants

namespace reference {

/// y[i] = relu(x[i]) = x[i] < 0 ? 0 : x[i] (a NaN passes through, as torch.relu).
template <class T>
void relu_forward(const T* x, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

/// dx[i] = y[i] > 0 ? dy[i] : 0, from the forward output y (y > 0 exactly where x > 0).
template <class T>
void relu_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

/// y[i] = 0.5 x (1 + erf(x / sqrt 2)), torch.nn.GELU(approximate='none').
template <class T>
void gelu_forward(const T* x, T* y, std::size_t n) noexcept {
    const T a = static_cast<T>(activation_constants::sqrt1_2);
    for (std::size_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * a));
}

/// dx[i] = dy[i] * (Phi(x) + x phi(x)) from the forward input x.
template <class T>
void gelu_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    const T a = static_cast<T>(activation_constants::sqrt1_2);
    const T b = static_cast<T>(activation_constants::inv_sqrt_2pi);
    for (std::size_t i = 0; i < n; ++i) {
        const T cdf = T(0.5) * (T(1) + std::erf(x[i] * a));
        const T pdf = b * std::exp(T(-0.5) * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

/// y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), torch.nn.GELU(approximate='tanh').
template <class T>
void gelu_tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    const T beta = static_cast<T>(activation_constants::sqrt_2_over_pi);
    const T kappa = static_cast<T>(activation_constants::gelu_kappa);
    for (std::size_t i = 0; i < n; ++i) {
        const T v = x[i];
        const T inner = beta * (v + kappa * v * v * v);
        y[i] = T(0.5) * v * (T(1) + std::tanh(inner));
    }
}

/// Backward of gelu_tanh_forward from the forward input x (the formula of the file comment).
template <class T>
void gelu_tanh_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    const T beta = static_cast<T>(activation_constants::sqrt_2_over_pi);
    const T kappa = static_cast<T>(activation_constants::gelu_kappa);
    for (std::size_t i = 0; i < n; ++i) {
        const T v = x[i];
        const T v2 = v * v;
        const T t = std::tanh(beta * (v + kappa * v2 * v));
        const T left_derivative = T(0.5) * (T(1) + t);
        const T right_derivative = T(0.5) * v * (T(1) - t * t) * beta * (T(1) + T(3) * kappa * v2);
        dx[i] = dy[i] * (left_derivative + right_derivative);
    }
}

/// y[i] = tanh(x[i]).
template <class T>
void tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

/// dx[i] = dy[i] * (1 - y[i]^2) from the forward output y.
template <class T>
void tanh_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

/// y[i] = 1 / (1 + exp(-x[i])).
template <class T>
void sigmoid_forward(const T* x, T* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
}

/// dx[i] = dy[i] * y[i] * (1 - y[i]) from the forward output y.
template <class T>
void sigmoid_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * ((T(1) - y[i]) * y[i]);
}

}  // namespace reference

#if SFT_KERNELS_SIMD
namespace activation_detail {

/// y = op(x) over the full batches; returns where the tail starts.
template <class T, class Op>
std::size_t unary_body(const T* x, T* y, std::size_t n, Op op) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = n / w * w;  // (i + w <= n would leave GCC unsure that i cannot wrap)
    for (std::size_t i = 0; i < body; i += w) op(B::load_unaligned(x + i)).store_unaligned(y + i);
    return body;
}

/// dx = op(dy, v) over the full batches (v: the cached input or output); returns where the tail starts.
template <class T, class Op>
std::size_t backward_body(const T* dy, const T* v, T* dx, std::size_t n, Op op) noexcept {
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = n / w * w;
    for (std::size_t i = 0; i < body; i += w) op(B::load_unaligned(dy + i), B::load_unaligned(v + i)).store_unaligned(dx + i);
    return body;
}

}  // namespace activation_detail
#endif

/// The single-threaded kernels: what each task of the threaded ones below runs on its range.
namespace serial {

/// y[i] = relu(x[i]), i < n (see the file comment). y may alias x.
template <class T>
void relu_forward(const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    i = activation_detail::unary_body(x, y, n, [](const B& v) { return xsimd::select(v < B(T(0)), B(T(0)), v); });
#endif
    reference::relu_forward(x + i, y + i, n - i);
}

/// dx[i] = y[i] > 0 ? dy[i] : 0 from the forward output y. dx may alias dy.
template <class T>
void relu_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    i = activation_detail::backward_body(dy, y, dx, n, [](const B& g, const B& v) { return xsimd::select(v > B(T(0)), g, B(T(0))); });
#endif
    reference::relu_backward(dy + i, y + i, dx + i, n - i);
}

/// y[i] = gelu(x[i]) = 0.5 x (1 + erf(x / sqrt 2)), i < n. y may alias x.
template <class T>
void gelu_forward(const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B a(static_cast<T>(activation_constants::sqrt1_2)), half(T(0.5)), one(T(1));
    i = activation_detail::unary_body(x, y, n, [&](const B& v) { return half * v * (one + xsimd::erf(v * a)); });
#endif
    reference::gelu_forward(x + i, y + i, n - i);
}

/// dx[i] = dy[i] * gelu'(x[i]) from the forward input x. dx may alias dy.
template <class T>
void gelu_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B a(static_cast<T>(activation_constants::sqrt1_2)), b(static_cast<T>(activation_constants::inv_sqrt_2pi));
    const B half(T(0.5)), mhalf(T(-0.5)), one(T(1));
    i = activation_detail::backward_body(dy, x, dx, n, [&](const B& g, const B& v) {
        const B cdf = half * (one + xsimd::erf(v * a));
        const B pdf = b * xsimd::exp(mhalf * v * v);
        return g * (cdf + v * pdf);
    });
#endif
    reference::gelu_backward(dy + i, x + i, dx + i, n - i);
}

/// y[i] = gelu_tanh(x[i]), the tanh approximation, i < n. y may alias x.
template <class T>
void gelu_tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B beta(static_cast<T>(activation_constants::sqrt_2_over_pi)), kappa(static_cast<T>(activation_constants::gelu_kappa));
    const B half(T(0.5)), one(T(1));
    i = activation_detail::unary_body(x, y, n, [&](const B& v) {
        const B inner = beta * (v + kappa * v * v * v);
        return half * v * (one + xsimd::tanh(inner));
    });
#endif
    reference::gelu_tanh_forward(x + i, y + i, n - i);
}

/// dx[i] = dy[i] * gelu_tanh'(x[i]) from the forward input x. dx may alias dy.
template <class T>
void gelu_tanh_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B beta(static_cast<T>(activation_constants::sqrt_2_over_pi)), kappa(static_cast<T>(activation_constants::gelu_kappa));
    const B half(T(0.5)), one(T(1)), three(T(3));
    i = activation_detail::backward_body(dy, x, dx, n, [&](const B& g, const B& v) {
        const B v2 = v * v;
        const B t = xsimd::tanh(beta * (v + kappa * v2 * v));
        const B left_derivative = half * (one + t);
        const B right_derivative = half * v * (one - t * t) * beta * (one + three * kappa * v2);
        return g * (left_derivative + right_derivative);
    });
#endif
    reference::gelu_tanh_backward(dy + i, x + i, dx + i, n - i);
}

/// y[i] = tanh(x[i]), i < n. y may alias x.
template <class T>
void tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    i = activation_detail::unary_body(x, y, n, [](const B& v) { return xsimd::tanh(v); });
#endif
    reference::tanh_forward(x + i, y + i, n - i);
}

/// dx[i] = dy[i] * (1 - y[i]^2) from the forward output y. dx may alias dy.
template <class T>
void tanh_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B one(T(1));
    i = activation_detail::backward_body(dy, y, dx, n, [&](const B& g, const B& v) { return g * (one - v * v); });
#endif
    reference::tanh_backward(dy + i, y + i, dx + i, n - i);
}

/// y[i] = 1 / (1 + exp(-x[i])), i < n. y may alias x.
template <class T>
void sigmoid_forward(const T* x, T* y, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B one(T(1));
    i = activation_detail::unary_body(x, y, n, [&](const B& v) { return one / (one + xsimd::exp(-v)); });
#endif
    reference::sigmoid_forward(x + i, y + i, n - i);
}

/// dx[i] = dy[i] * y[i] (1 - y[i]) from the forward output y. dx may alias dy.
template <class T>
void sigmoid_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    std::size_t i = 0;
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    const B one(T(1));
    i = activation_detail::backward_body(dy, y, dx, n, [&](const B& g, const B& v) { return g * ((one - v) * v); });
#endif
    reference::sigmoid_backward(dy + i, y + i, dx + i, n - i);
}

}  // namespace serial

/// y[i] = relu(x[i]), i < n; threaded above 2 * parallel_grain elements (same results). y may alias x.
template <class T>
void relu_forward(const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::relu_forward(x + i, y + i, e - i); });
}

/// y[i] = gelu(x[i]), exact, i < n; threaded above 2 * parallel_grain elements (same results). y may alias x.
template <class T>
void gelu_forward(const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::gelu_forward(x + i, y + i, e - i); });
}

/// y[i] = gelu_tanh(x[i]), the tanh approximation, i < n; threaded above 2 * parallel_grain elements (same results). y may alias x.
template <class T>
void gelu_tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::gelu_tanh_forward(x + i, y + i, e - i); });
}

/// y[i] = tanh(x[i]), i < n; threaded above 2 * parallel_grain elements (same results). y may alias x.
template <class T>
void tanh_forward(const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::tanh_forward(x + i, y + i, e - i); });
}

/// y[i] = 1 / (1 + exp(-x[i])), i < n; threaded above 2 * parallel_grain elements (same results). y may alias x.
template <class T>
void sigmoid_forward(const T* x, T* y, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::sigmoid_forward(x + i, y + i, e - i); });
}

/// dx[i] = y[i] > 0 ? dy[i] : 0 from the forward output y; threaded above 2 * parallel_grain elements (same results). dx may alias dy.
template <class T>
void relu_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::relu_backward(dy + i, y + i, dx + i, e - i); });
}

/// dx[i] = dy[i] * gelu'(x[i]) from the forward input x; threaded above 2 * parallel_grain elements (same results). dx may alias dy.
template <class T>
void gelu_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::gelu_backward(dy + i, x + i, dx + i, e - i); });
}

/// dx[i] = dy[i] * gelu_tanh'(x[i]) from the forward input x; threaded above 2 * parallel_grain elements (same results). dx may alias dy.
template <class T>
void gelu_tanh_backward(const T* dy, const T* x, T* dx, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::gelu_tanh_backward(dy + i, x + i, dx + i, e - i); });
}

/// dx[i] = dy[i] * (1 - y[i]^2) from the forward output y; threaded above 2 * parallel_grain elements (same results). dx may alias dy.
template <class T>
void tanh_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::tanh_backward(dy + i, y + i, dx + i, e - i); });
}

/// dx[i] = dy[i] * y[i] (1 - y[i]) from the forward output y; threaded above 2 * parallel_grain elements (same results). dx may alias dy.
template <class T>
void sigmoid_backward(const T* dy, const T* y, T* dx, std::size_t n) noexcept {
    parallel_ranges(n, [=](std::size_t i, std::size_t e) { serial::sigmoid_backward(dy + i, y + i, dx + i, e - i); });
}

namespace serial {
/// relu_backward and the column sums of its result in one pass over the columns j < cols of
/// row-major matrices with leading dimension ld: dz[r, j] = y[r, j] > 0 ? dy[r, j] : 0, then
/// db[j] += dz[r, j] with the rows added in the order and grouping of add_col_sums, so that the
/// result equals relu_backward followed by add_col_sums bit for bit.
template <class T>
void relu_backward_bias(const T* dy, const T* y, T* dz, std::size_t rows, std::size_t cols, std::size_t ld, T* db) noexcept {
#if SFT_KERNELS_SIMD
    using B = Batch<T>;
    constexpr std::size_t w = B::size;
    const std::size_t body = cols / w * w;
    const B zero(T(0));
    const auto grad = [&](std::size_t o) {  // the SIMD relu_backward of one batch, stored, returned
        const B d = xsimd::select(B::load_unaligned(y + o) > zero, B::load_unaligned(dy + o), zero);
        d.store_unaligned(dz + o);
        return d;
    };
    const auto grad1 = [&](std::size_t o) { return dz[o] = y[o] > T(0) ? dy[o] : T(0); };
    const std::size_t rows4 = rows / 4 * 4;
    std::size_t r = 0;
    for (; r < rows4; r += 4) {
        const std::size_t o0 = r * ld, o1 = o0 + ld, o2 = o1 + ld, o3 = o2 + ld;
        for (std::size_t j = 0; j < body; j += w) {
            B acc = B::load_unaligned(db + j);
            acc += grad(o0 + j);
            acc += grad(o1 + j);
            acc += grad(o2 + j);
            acc += grad(o3 + j);
            acc.store_unaligned(db + j);
        }
        for (std::size_t j = body; j < cols; ++j) {
            const T d0 = grad1(o0 + j), d1 = grad1(o1 + j), d2 = grad1(o2 + j), d3 = grad1(o3 + j);
            db[j] = db[j] + d0 + d1 + d2 + d3;
        }
    }
    for (; r < rows; ++r) {
        const std::size_t o = r * ld;
        for (std::size_t j = 0; j < body; j += w) (B::load_unaligned(db + j) + grad(o + j)).store_unaligned(db + j);
        for (std::size_t j = body; j < cols; ++j) db[j] += grad1(o + j);
    }
#else
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < cols; ++j) {
            const std::size_t o = r * ld + j;
            dz[o] = y[o] > T(0) ? dy[o] : T(0);
            db[j] += dz[o];
        }
#endif
}
}  // namespace serial

/// The backward of a linear layer's bias followed by ReLU, fused: dz = dy where y > 0, else 0
/// (relu_backward from the output y), and db[j] += sum_r dz[r, j] (add_col_sums) in the same pass
/// over [rows, cols]; db may be nullptr (no bias gradient). Bit-identical to relu_backward then
/// add_col_sums; threaded over blocks of columns like add_col_sums. dz must not overlap dy or y.
template <class T>
void relu_backward_bias(const T* dy, const T* y, T* dz, std::size_t rows, std::size_t cols, T* db) noexcept {
    if (!db) {
        relu_backward(dy, y, dz, rows * cols);
        return;
    }
    parallel_col_blocks(rows, cols, [=](std::size_t c0, std::size_t c1) {
        serial::relu_backward_bias(dy + c0, y + c0, dz + c0, rows, c1 - c0, cols, db + c0);
    });
}

}  // namespace sft::kernels
