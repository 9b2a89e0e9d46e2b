#include "kernel_test_util.hpp"

#include <sft/kernels/layernorm.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using sft::testing::eps;
using sft::testing::max_scaled_error;
using sft::testing::TestBuffer;

namespace {
namespace k = sft::kernels;

/// y = (x - mean) / sqrt(var + eps) * w + b in long double (torch.nn.LayerNorm's definition, biased variance).
template <class T, class X>
std::vector<long double> exact_layernorm(const X* x, std::size_t n, const T* w, const T* b, long double e) {
    long double mu = 0, var = 0;
    for (std::size_t j = 0; j < n; ++j) mu += x[j];
    mu /= n;
    for (std::size_t j = 0; j < n; ++j) var += (x[j] - mu) * (x[j] - mu);
    var /= n;
    std::vector<long double> y(n);
    for (std::size_t j = 0; j < n; ++j) y[j] = (x[j] - mu) / std::sqrt(var + e) * (w ? w[j] : T(1)) + (b ? b[j] : T(0));
    return y;
}
}  // namespace

TEMPLATE_TEST_CASE("kernels: layernorm forward matches the exact values and the reference on odd sizes", "[kernels][layernorm]", float,
                   double) {
    using T = TestType;
    const T e = T(1e-5);
    for (std::size_t n : {1u, 2u, 3u, 7u, 15u, 16u, 17u, 33u, 65u, 1000u, 1031u})
        for (int affine = 0; affine < 2; ++affine) {
            INFO("n = " << n << ", affine " << affine);
            TestBuffer<T> x(n, 1), w(n, 2), b(n, 3), y(n, 1), yr(n, 0);
            x.fill_uniform(n, -3, 5);
            w.fill_uniform(n + 1, 0.5, 1.5);
            b.fill_uniform(n + 2, -1, 1);
            const T* wp = affine ? w.data() : nullptr;
            const T* bp = affine ? b.data() : nullptr;
            T mean = 0, rstd = 0, mean_r = 0, rstd_r = 0;
            k::layernorm_forward_row(x.data(), n, wp, bp, e, y.data(), &mean, &rstd);
            k::reference::layernorm_forward_row(x.data(), n, wp, bp, e, yr.data(), &mean_r, &rstd_r);
            const auto want = exact_layernorm(x.data(), n, wp, bp, e);
            // Lane-wise float sums: the mean and the variance carry about (n / lanes + lanes) eps.
            const double tol = (std::is_same_v<T, float> ? 64 : 256) * eps<T>();
            CHECK(max_scaled_error(y.data(), want.data(), n) <= tol);
            CHECK(max_scaled_error(yr.data(), want.data(), n) <= 8 * eps<T>());
            CHECK(std::fabs(mean - mean_r) <= tol * std::max<T>(1, std::fabs(mean_r)));
            CHECK(std::fabs(rstd - rstd_r) <= tol * rstd_r);
            CHECK(y.guards_intact());
        }
}

TEMPLATE_TEST_CASE("kernels: layernorm keeps its accuracy when the mean dwarfs the spread (two-pass variance)", "[kernels][layernorm]",
                   float, double) {
    using T = TestType;
    const std::size_t n = 257;
    TestBuffer<T> x(n, 1), y(n, 0);
    sft::Rng rng(3);
    for (std::size_t j = 0; j < n; ++j) x[j] = static_cast<T>(1000.0 + rng.uniform(-0.1, 0.1));
    T mean, rstd;
    k::layernorm_forward_row(x.data(), n, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), T(1e-12), y.data(), &mean,
                             &rstd);
    const auto want = exact_layernorm(x.data(), n, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), 1e-12L);
    // The mean's rounding, about sqrt(n) * eps * |mu|, shifts xhat by that over the spread (std 0.058).
    // A one-pass variance E[x^2] - mu^2 would lose eps * mu^2 = 0.12 (float) against var = 0.0033.
    const double bound = 4 * std::sqrt(double(n)) * eps<T>() * 1000.0 / 0.058;
    const double err = max_scaled_error(y.data(), want.data(), n);
    INFO("error " << err << ", bound " << bound);
    CHECK(err <= bound);
}

TEMPLATE_TEST_CASE("kernels: layernorm backward matches the reference and finite differences of the exact forward",
                   "[kernels][layernorm]", float, double) {
    using T = TestType;
    const T e = T(1e-5);
    for (std::size_t n : {1u, 3u, 16u, 17u, 33u, 100u})
        for (int affine = 0; affine < 2; ++affine) {
            INFO("n = " << n << ", affine " << affine);
            TestBuffer<T> x(n, 1), w(n, 2), b(n, 3), y(n, 0), dy(n, 1), dx(n, 2), dxr(n, 0);
            x.fill_uniform(n + 9, -2, 2);
            w.fill_uniform(n + 10, 0.5, 1.5);
            b.fill_uniform(n + 11, -1, 1);
            dy.fill_uniform(n + 12, -1, 1);
            const T* wp = affine ? w.data() : nullptr;
            const T* bp = affine ? b.data() : nullptr;
            T mean, rstd;
            k::layernorm_forward_row(x.data(), n, wp, bp, e, y.data(), &mean, &rstd);
            std::vector<T> dw(n, T(0.5)), db(n, T(-0.5)), dwr(dw), dbr(db);
            k::layernorm_backward_row(dy.data(), x.data(), n, mean, rstd, wp, dx.data(), dw.data(), db.data());
            k::reference::layernorm_backward_row(dy.data(), x.data(), n, mean, rstd, wp, dxr.data(), dwr.data(), dbr.data());
            const double tol = (std::is_same_v<T, float> ? 64 : 256) * eps<T>();
            CHECK(max_scaled_error(dx.data(), dxr.data(), n) <= tol);
            CHECK(max_scaled_error(dw.data(), dwr.data(), n) <= tol);
            CHECK(max_scaled_error(db.data(), dbr.data(), n) <= tol);
            CHECK(dx.guards_intact());
            // L = sum_j dy_j y_j: dL/dx by central differences of the exact forward in long double,
            // dL/dw_j = dy_j xhat_j and dL/db_j = dy_j, added to what the buffers held (0.5, -0.5).
            std::vector<long double> xp(x.data(), x.data() + n), fdx(n), fdw(n), fdb(n);
            const auto loss = [&](const std::vector<long double>& xv) {
                const auto yv = exact_layernorm(xv.data(), n, wp, bp, e);
                long double s = 0;
                for (std::size_t j = 0; j < n; ++j) s += dy[j] * yv[j];
                return s;
            };
            const long double h = 1e-6L;
            for (std::size_t j = 0; j < n; ++j) {
                const long double saved = xp[j];
                xp[j] = saved + h;
                const long double lp = loss(xp);
                xp[j] = saved - h;
                const long double lm = loss(xp);
                xp[j] = saved;
                fdx[j] = (lp - lm) / (2 * h);
            }
            const auto xhat = exact_layernorm(x.data(), n, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), e);
            for (std::size_t j = 0; j < n; ++j) {
                fdw[j] = 0.5L + dy[j] * xhat[j];
                fdb[j] = -0.5L + dy[j];
            }
            const double fd_tol = std::is_same_v<T, float> ? 64 * eps<float>() : 1e-9;
            CHECK(max_scaled_error(dx.data(), fdx.data(), n) <= fd_tol);
            CHECK(max_scaled_error(dw.data(), fdw.data(), n) <= fd_tol);
            CHECK(max_scaled_error(db.data(), fdb.data(), n) <= fd_tol);
        }
}
