#include "kernel_test_util.hpp"

#include <sft/kernels/activation.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using sft::testing::eps;
using sft::testing::kernel_sizes;
using sft::testing::max_scaled_error;
using sft::testing::TestBuffer;

namespace {

namespace k = sft::kernels;

/// Tolerance of the SIMD kernels against the scalar references, relative to max(1, |value|):
/// xsimd's erf is up to 68 ulp off in double, its exp and tanh about 1.5 ulp (see activation.hpp).
template <class T>
double simd_tol() {
    return std::is_same_v<T, float> ? 16 * eps<float>() : 512 * eps<double>();
}

/// An activation: forward and backward kernels, their references, and the exact values in long
/// double. `backward_from_output` says whether backward reads y (else x).
template <class T>
struct Op {
    std::string name;
    void (*fwd)(const T*, T*, std::size_t) noexcept;
    void (*fwd_ref)(const T*, T*, std::size_t) noexcept;
    void (*bwd)(const T*, const T*, T*, std::size_t) noexcept;
    void (*bwd_ref)(const T*, const T*, T*, std::size_t) noexcept;
    bool backward_from_output;
    std::function<long double(long double)> exact;        ///< f(x)
    std::function<long double(long double)> exact_prime;  ///< f'(x)
};

constexpr long double sqrt1_2 = 0.707106781186547524400844362104849039L;
constexpr long double inv_sqrt_2pi = 0.398942280401432677939946059934381868L;
constexpr long double sqrt_2_over_pi = 0.797884560802865355879892119868763737L;

long double gelu_tanh_exact(long double x) {
    return 0.5L * x * (1 + std::tanh(sqrt_2_over_pi * (x + 0.044715L * x * x * x)));
}

template <class T>
std::vector<Op<T>> all_ops() {
    return {
        {"relu", k::relu_forward<T>, k::reference::relu_forward<T>, k::relu_backward<T>, k::reference::relu_backward<T>, true,
         [](long double x) { return x < 0 ? 0.0L : x; }, [](long double x) { return x > 0 ? 1.0L : 0.0L; }},
        {"gelu", k::gelu_forward<T>, k::reference::gelu_forward<T>, k::gelu_backward<T>, k::reference::gelu_backward<T>, false,
         [](long double x) { return 0.5L * x * (1 + std::erf(x * sqrt1_2)); },
         [](long double x) { return 0.5L * (1 + std::erf(x * sqrt1_2)) + x * inv_sqrt_2pi * std::exp(-0.5L * x * x); }},
        {"gelu_tanh", k::gelu_tanh_forward<T>, k::reference::gelu_tanh_forward<T>, k::gelu_tanh_backward<T>,
         k::reference::gelu_tanh_backward<T>, false, gelu_tanh_exact,
         [](long double x) {  // d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x sech^2(u) u'
             const long double u = sqrt_2_over_pi * (x + 0.044715L * x * x * x);
             const long double sech = 1 / std::cosh(u);
             return 0.5L * (1 + std::tanh(u)) + 0.5L * x * sech * sech * sqrt_2_over_pi * (1 + 3 * 0.044715L * x * x);
         }},
        {"tanh", k::tanh_forward<T>, k::reference::tanh_forward<T>, k::tanh_backward<T>, k::reference::tanh_backward<T>, true,
         [](long double x) { return std::tanh(x); }, [](long double x) { return 1 - std::tanh(x) * std::tanh(x); }},
        {"sigmoid", k::sigmoid_forward<T>, k::reference::sigmoid_forward<T>, k::sigmoid_backward<T>, k::reference::sigmoid_backward<T>,
         true, [](long double x) { return 1 / (1 + std::exp(-x)); },
         [](long double x) {
             const long double s = 1 / (1 + std::exp(-x));
             return s * (1 - s);
         }},
    };
}

}  // namespace

TEMPLATE_TEST_CASE("kernels: activations match their scalar references on every tail and offset", "[kernels][activation]", float,
                   double) {
    using T = TestType;
    for (const auto& op : all_ops<T>())
        for (std::size_t offset : {0u, 1u})
            for (std::size_t n : kernel_sizes) {
                INFO(op.name << ", n = " << n << ", offset = " << offset);
                TestBuffer<T> x(n, offset), dy(n, offset + 1), y(n, offset + 2), yr(n, 0), dx(n, offset), dxr(n, 0);
                x.fill_uniform(n + 11, -6, 6);
                dy.fill_uniform(n + 12, -1, 1);
                op.fwd(x.data(), y.data(), n);
                op.fwd_ref(x.data(), yr.data(), n);
                CHECK(max_scaled_error(y.data(), yr.data(), n) <= simd_tol<T>());
                const T* saved = op.backward_from_output ? yr.data() : x.data();
                op.bwd(dy.data(), saved, dx.data(), n);
                op.bwd_ref(dy.data(), saved, dxr.data(), n);
                CHECK(max_scaled_error(dx.data(), dxr.data(), n) <= simd_tol<T>());
                CHECK(y.guards_intact());
                CHECK(dx.guards_intact());
            }
}

TEMPLATE_TEST_CASE("kernels: activations and their derivatives match the exact values", "[kernels][activation]", float, double) {
    using T = TestType;
    // Against long double: the formula errors of the references plus the SIMD error.
    // Measured (AVX-512): float <= 4.6 eps (gelu_tanh'), double <= 52 eps (gelu, from xsimd::erf).
    const double tol = std::is_same_v<T, float> ? 8 * eps<float>() : 128 * eps<double>();
    const std::size_t n = 4001;
    TestBuffer<T> x(n, 1), y(n, 0), dy(n, 0), dx(n, 0);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(-10.0 + 20.0 * double(i) / double(n - 1));
    for (std::size_t i = 0; i < n; ++i) dy[i] = T(1);
    for (const auto& op : all_ops<T>()) {
        INFO(op.name);
        op.fwd(x.data(), y.data(), n);
        op.bwd(dy.data(), op.backward_from_output ? y.data() : x.data(), dx.data(), n);
        std::vector<long double> fy(n), fdy(n);
        for (std::size_t i = 0; i < n; ++i) {
            fy[i] = op.exact(x[i]);
            // From the output, the derivative is that of the rounded y (1 - y^2, y (1 - y)): evaluate
            // the exact derivative at the input, the difference is within the tolerance.
            fdy[i] = op.exact_prime(x[i]);
        }
        const double ef = max_scaled_error(y.data(), fy.data(), n);
        const double eb = max_scaled_error(dx.data(), fdy.data(), n);
        INFO("forward error " << ef << ", derivative error " << eb << ", tol " << tol);
        CHECK(ef <= tol);
        CHECK(eb <= tol);
    }
}

TEMPLATE_TEST_CASE("kernels: activations at special points and extreme inputs", "[kernels][activation]", float, double) {
    using T = TestType;
    const std::vector<T> xs = {T(0), T(-0.0), T(1e-30), T(-1e-30), T(30), T(-30), T(88), T(-88), T(100), T(-100), T(1e4), T(-1e4)};
    const std::size_t n = xs.size();
    // Repeat the points so that they land in SIMD batches and in the scalar tail.
    const std::size_t m = 5 * n;
    std::vector<T> x(m);
    for (std::size_t i = 0; i < m; ++i) x[i] = xs[i % n];
    std::vector<T> y(m), dx(m), ones(m, T(1));
    for (const auto& op : all_ops<T>()) {
        INFO(op.name);
        op.fwd(x.data(), y.data(), m);
        op.bwd(ones.data(), op.backward_from_output ? y.data() : x.data(), dx.data(), m);
        for (std::size_t i = 0; i < m; ++i) {
            INFO("x = " << x[i] << ": y = " << y[i] << ", dy/dx = " << dx[i]);
            REQUIRE(std::isfinite(y[i]));
            REQUIRE(std::isfinite(dx[i]));
            const long double want = op.exact(x[i]);
            REQUIRE(std::fabs(y[i] - want) <= 4 * eps<T>() * std::max<long double>(1, std::fabs(want)));
        }
        CHECK(y[0] == (op.name == "sigmoid" ? T(0.5) : T(0)));  // x = 0 exactly
        CHECK(y[n] == y[0]);                                     // the same point in another lane
    }
}

TEST_CASE("kernels: relu passes NaN through and zeroes its gradient at 0", "[kernels][activation]") {
    std::vector<float> x(40, std::numeric_limits<float>::quiet_NaN()), y(40), g(40, 2.0f), dx(40);
    for (std::size_t i = 0; i < 40; i += 2) x[i] = float(i % 4) - 1.0f;  // -1, 1, ...
    x[4] = 0.0f;
    k::relu_forward(x.data(), y.data(), x.size());
    for (std::size_t i = 0; i < 40; ++i) {
        INFO("i = " << i << ", x = " << x[i]);
        if (std::isnan(x[i])) CHECK(std::isnan(y[i]));
        else CHECK(y[i] == (x[i] > 0 ? x[i] : 0.0f));
    }
    k::relu_backward(g.data(), y.data(), dx.data(), x.size());
    CHECK(dx[4] == 0.0f);  // x == 0: gradient 0, as torch's threshold_backward
    CHECK(dx[2] == 2.0f);
    CHECK(dx[0] == 0.0f);
}

TEST_CASE("kernels: activation backward kernels are the derivatives of the forward kernels (double)", "[kernels][activation]") {
    // Central differences of the forward kernel itself, so the check holds on the scalar and SIMD paths alike.
    const std::size_t n = 67;
    TestBuffer<double> x(n, 1), dy(n, 0), y(n, 0), dx(n, 0);
    x.fill_uniform(5, -4, 4);
    dy.fill_uniform(6, -1, 1);
    for (const auto& op : all_ops<double>()) {
        INFO(op.name);
        op.fwd(x.data(), y.data(), n);
        op.bwd(dy.data(), op.backward_from_output ? y.data() : x.data(), dx.data(), n);
        const double h = 1e-6;
        double worst = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            if (op.name == "relu" && std::fabs(x[i]) < 2 * h) continue;  // the kink
            double xp = x[i] + h, xm = x[i] - h, yp, ym;
            op.fwd(&xp, &yp, 1);
            op.fwd(&xm, &ym, 1);
            const double numeric = dy[i] * (yp - ym) / (2 * h);
            worst = std::max(worst, std::fabs(dx[i] - numeric) / std::max(1.0, std::fabs(numeric)));
        }
        INFO("max scaled error " << worst);
        CHECK(worst <= 1e-8);
    }
}
