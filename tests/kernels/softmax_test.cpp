#include "kernel_test_util.hpp"

#include <sft/kernels/softmax.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using sft::testing::eps;
using sft::testing::kernel_sizes;
using sft::testing::max_scaled_error;
using sft::testing::TestBuffer;

namespace {
namespace k = sft::kernels;

/// log-softmax of x[n] in long double.
template <class T>
std::vector<long double> exact_log_softmax(const T* x, std::size_t n) {
    long double m = x[0];
    for (std::size_t j = 1; j < n; ++j) m = std::max<long double>(m, x[j]);
    long double s = 0;
    for (std::size_t j = 0; j < n; ++j) s += std::exp(static_cast<long double>(x[j]) - m);
    std::vector<long double> out(n);
    for (std::size_t j = 0; j < n; ++j) out[j] = x[j] - m - std::log(s);
    return out;
}

/// The cross-entropy of one row as torch defines it (softmax.hpp's file comment), straight from
/// the log-probabilities in long double.
template <class T, class W>
long double exact_cross_entropy(const T* x, std::size_t n, std::size_t target, W smoothing, const W* w) {
    const auto lp = exact_log_softmax(x, n);
    long double smooth = 0;
    for (std::size_t j = 0; j < n; ++j) smooth += (w ? w[j] : W(1)) * -lp[j];
    return (1 - static_cast<long double>(smoothing)) * (w ? w[target] : W(1)) * -lp[target] +
           static_cast<long double>(smoothing) / n * smooth;
}
}  // namespace

TEMPLATE_TEST_CASE("kernels: softmax_row matches the exact softmax and the reference on every tail and offset", "[kernels][softmax]",
                   float, double) {
    using T = TestType;
    for (std::size_t offset : {0u, 1u})
        for (std::size_t n : kernel_sizes) {
            if (n == 0) continue;
            INFO("n = " << n << ", offset = " << offset);
            TestBuffer<T> x(n, offset), y(n, offset + 1), r(n, 0);
            x.fill_uniform(n, -20, 20);
            k::softmax_row(x.data(), n, y.data());
            k::reference::softmax_row(x.data(), n, r.data());
            const auto lp = exact_log_softmax(x.data(), n);
            std::vector<long double> p(n);
            long double total = 0;
            for (std::size_t j = 0; j < n; ++j) {
                p[j] = std::exp(lp[j]);
                total += y[j];
            }
            CHECK(max_scaled_error(y.data(), p.data(), n) <= 8 * eps<T>());
            CHECK(max_scaled_error(r.data(), p.data(), n) <= 8 * eps<T>());
            CHECK(std::fabs(total - 1) <= (n / 16.0 + 20) * eps<T>());
            CHECK(y.guards_intact());
            k::softmax_row(x.data(), n, x.data());  // in place
            for (std::size_t j = 0; j < n; ++j) REQUIRE(x[j] == y[j]);
        }
}

TEMPLATE_TEST_CASE("kernels: softmax_row does not overflow on large logits", "[kernels][softmax]", float, double) {
    using T = TestType;
    std::vector<T> x = {T(1000), T(999), T(-1000), T(1000), T(500), T(1000), T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7), T(8),
                        T(9), T(10), T(1000)};
    std::vector<T> y(x.size());
    k::softmax_row(x.data(), x.size(), y.data());
    const long double e1 = std::exp(-1.0L);
    const long double z = 4 + e1;  // four entries at the max, one at max - 1
    CHECK(std::fabs(y[0] - 1 / z) <= 4 * eps<T>());
    CHECK(std::fabs(y[1] - e1 / z) <= 4 * eps<T>());
    CHECK(y[2] == T(0));
    for (T v : y) CHECK(std::isfinite(v));
}

TEMPLATE_TEST_CASE("kernels: softmax_cross_entropy_row matches torch's definition, the reference and finite differences",
                   "[kernels][softmax]", float, double) {
    using T = TestType;
    for (std::size_t n : {1u, 2u, 7u, 16u, 17u, 33u, 100u})
        for (int variant = 0; variant < 4; ++variant) {
            const bool weighted = variant & 1;
            const T smoothing = (variant & 2) ? T(0.1) : T(0);
            const std::size_t target = (n * 7 + 3) % n;
            INFO("n = " << n << ", weighted " << weighted << ", smoothing " << smoothing << ", target " << target);
            TestBuffer<T> x(n, 1), w(n, 2), g(n, 3), gr(n, 0);
            x.fill_uniform(n + variant, -5, 5);
            w.fill_uniform(n + 50, 0.2, 2);
            const T* wp = weighted ? w.data() : nullptr;
            T wsum = 0;
            for (std::size_t j = 0; j < n; ++j) wsum += weighted ? w[j] : T(1);
            const T scale = T(0.25);
            const T loss = k::softmax_cross_entropy_row(x.data(), n, target, smoothing, wp, wsum, scale, g.data());
            const T loss_ref = k::reference::softmax_cross_entropy_row(x.data(), n, target, smoothing, wp, wsum, scale, gr.data());
            const long double want = exact_cross_entropy(x.data(), n, target, smoothing, wp);
            CHECK(std::fabs(loss - want) <= 32 * eps<T>() * std::max<long double>(1, want));
            CHECK(std::fabs(loss_ref - want) <= 8 * eps<T>() * std::max<long double>(1, want));
            CHECK(max_scaled_error(g.data(), gr.data(), n) <= 16 * eps<T>());
            CHECK(g.guards_intact());
            // The gradient is scale * dloss/dx: central differences of the exact loss in long double.
            std::vector<long double> fd(n), xp(x.data(), x.data() + n);
            const long double h = 1e-6L;
            for (std::size_t j = 0; j < n; ++j) {
                const long double saved = xp[j];
                xp[j] = saved + h;
                const long double lp = exact_cross_entropy(xp.data(), n, target, smoothing, wp);
                xp[j] = saved - h;
                const long double lm = exact_cross_entropy(xp.data(), n, target, smoothing, wp);
                xp[j] = saved;
                fd[j] = scale * (lp - lm) / (2 * h);
            }
            CHECK(max_scaled_error(g.data(), fd.data(), n) <= (std::is_same_v<T, float> ? 32 * eps<float>() : 1e-10));
        }
}
