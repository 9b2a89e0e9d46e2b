/// @file gradcheck.hpp
/// Finite-difference gradient checks for layers in double, for the Catch2 tests.
///
/// The scalar loss is a random projection of the output, L(x) = sum_i y_i * r_i with r fixed
/// (uniform in [-1, 1), seeded), so that dL/dy = r is what backward() receives and every output
/// element takes part. The numerical gradient is the central difference
///   dL/dv ~= (L(v + eps) - L(v - eps)) / (2 eps)
/// element by element; an element passes when |analytic - numeric| <= tol * max(1, |numeric|).
///
/// Usage:
///   sft::testing::check_input_grad(layer, x, 1e-6);
///   sft::testing::check_param_grads(layer, x, 1e-6);
/// A layer whose forward is random (Dropout in training) gets `before_forward`, called before
/// every forward, to reseed its Rng so that each forward draws the same mask.
#pragma once

#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

namespace sft::testing {

/// A tensor of the given shape, uniform in [lo, hi), from Rng(seed).
inline Tensor<double> random_tensor(const Shape& shape, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
    Rng rng(seed);
    Tensor<double> t = Tensor<double>::empty(shape);
    for (auto& v : t) v = rng.uniform(lo, hi);
    return t;
}

/// Same, keeping every value at least `margin` away from 0 (for kinks at 0 such as ReLU's).
inline Tensor<double> random_tensor_away_from_zero(const Shape& shape, std::uint64_t seed, double margin = 1e-2,
                                                   double lo = -1.0, double hi = 1.0) {
    Tensor<double> t = random_tensor(shape, seed, lo, hi);
    for (auto& v : t)
        if (std::abs(v) < margin) v = v < 0 ? v - margin : v + margin;
    return t;
}

namespace detail {
/// sum_i y_i * r_i.
inline double projected(const Tensor<double>& y, const Tensor<double>& r) {
    if (y.shape() != r.shape()) FAIL("forward returned shape " << y.shape().str() << ", first forward gave " << r.shape().str());
    double s = 0.0;
    for (std::size_t i = 0; i < y.numel(); ++i) s += y[i] * r[i];
    return s;
}

/// Checks `analytic` against central differences of `loss` over the elements of `v` (perturbed in place).
inline void compare_fd(const std::string& what, Tensor<double> v, const Tensor<double>& analytic,
                       const std::function<double()>& loss, double tol, double eps) {
    REQUIRE(analytic.defined());
    REQUIRE(analytic.shape() == v.shape());
    double max_err = 0.0;
    std::size_t worst = 0;
    double worst_a = 0.0, worst_n = 0.0;
    for (std::size_t i = 0; i < v.numel(); ++i) {
        const double saved = v[i];
        v[i] = saved + eps;
        const double lp = loss();
        v[i] = saved - eps;
        const double lm = loss();
        v[i] = saved;
        const double numeric = (lp - lm) / (2.0 * eps);
        const double err = std::abs(analytic[i] - numeric) / std::max(1.0, std::abs(numeric));
        if (err > max_err) {
            max_err = err;
            worst = i;
            worst_a = analytic[i];
            worst_n = numeric;
        }
    }
    INFO(what << ": max scaled error " << max_err << " at flat index " << worst << " (analytic " << worst_a
              << ", numeric " << worst_n << "), tol " << tol);
    CHECK(max_err <= tol);
}
}  // namespace detail

/// Checks the input gradient that layer.backward() returns against central differences of
/// sum(forward(x) * r). `layer` is any sft::nn::Module<double>; `x` is not modified.
template <class M>
void check_input_grad(M& layer, Tensor<double> x, double tol, std::uint64_t seed = 1234, double eps = 1e-6,
                      const std::function<void()>& before_forward = {}) {
    Tensor<double> xv = x.clone();
    auto run = [&]() {
        if (before_forward) before_forward();
        return layer.forward(xv);
    };
    const Tensor<double> y = run();
    const Tensor<double> r = random_tensor(y.shape(), seed);
    const Tensor<double> dx = layer.backward(r, true);
    detail::compare_fd(layer.label() + " input gradient", xv, dx, [&] { return detail::projected(run(), r); }, tol, eps);
}

/// Checks the gradient of every trainable parameter of `layer` against central differences of
/// sum(forward(x) * r). Gradients are zeroed first (they accumulate), and checked after one backward.
/// Frozen parameters must keep a zero gradient.
template <class M>
void check_param_grads(M& layer, Tensor<double> x, double tol, std::uint64_t seed = 4321, double eps = 1e-6,
                       const std::function<void()>& before_forward = {}) {
    const Tensor<double> xv = x.clone();
    auto run = [&]() {
        if (before_forward) before_forward();
        return layer.forward(xv);
    };
    for (auto* p : layer.parameters()) p->grad().zero_();
    const Tensor<double> y = run();
    const Tensor<double> r = random_tensor(y.shape(), seed);
    layer.backward(r, false);
    for (auto* p : layer.parameters()) {
        if (!p->requires_grad()) {
            double m = 0.0;
            for (double g : p->grad()) m = std::max(m, std::abs(g));
            INFO(p->name() << " is frozen and must have no gradient");
            CHECK(m == 0.0);
            continue;
        }
        const Tensor<double> analytic = p->grad().clone();
        detail::compare_fd(layer.label() + " gradient of '" + p->name() + "'", p->value(), analytic,
                           [&] { return detail::projected(run(), r); }, tol, eps);
    }
}

}  // namespace sft::testing
