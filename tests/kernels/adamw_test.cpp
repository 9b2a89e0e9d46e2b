// The fused optimizer kernels (kernels/adamw.hpp): the SIMD versions against the scalar
// references on odd sizes and unaligned pointers, and the references against the update rules
// written out in long double. In sft_test_core_scalar both sides are the reference, and the
// long-double checks still test the rule.
#include <sft/kernels/adamw.hpp>
#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

using sft::kernels::AdamCoefficients;
using sft::kernels::SgdCoefficients;

namespace {

template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed, double lo, double hi) {
    sft::Rng rng(seed);
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.uniform(lo, hi));
    return v;
}

// Distance in machine epsilons of max(1, |a|, |b|) (0 when bit-identical). The operands of every
// update are O(1) here, so this is the rounding of one operation even where the result cancels
// to near 0 (m = b1 m + (1 - b1) g), where a distance in ulps of the result would blow up.
template <class T>
double ulps(T a, T b) {
    if (a == b) return 0.0;
    const T scale = std::max({std::abs(a), std::abs(b), T(1)});
    return static_cast<double>(std::abs(a - b) / (scale * std::numeric_limits<T>::epsilon()));
}

constexpr std::size_t sizes[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257};
constexpr std::size_t offsets[] = {0, 1, 3};
constexpr std::size_t guard = 4;  // elements before and after the range that must stay untouched

template <class T>
void adam_simd_vs_reference() {
    double worst = 0.0;
    for (bool l2 : {false, true})
        for (bool amsgrad : {false, true})
            for (std::size_t n : sizes)
                for (std::size_t off : offsets) {
                    INFO("l2 " << l2 << " amsgrad " << amsgrad << " n " << n << " offset " << off);
                    const std::size_t len = off + n + guard;
                    const std::uint64_t seed = n * 7 + off;
                    auto p = random_values<T>(len, seed, -1, 1), g = random_values<T>(len, seed + 1, -2, 2);
                    auto m = random_values<T>(len, seed + 2, -0.5, 0.5), v = random_values<T>(len, seed + 3, 0, 0.5);
                    auto vmax = random_values<T>(len, seed + 4, 0, 0.6);
                    auto p2 = p, m2 = m, v2 = v, vmax2 = vmax;
                    const auto c = sft::kernels::adam_coefficients<T>(3e-3, 0.9, 0.999, 1e-8, l2 ? 0.1 : 0.05, !l2, 3.0);
                    sft::kernels::adam_update(p.data() + off, g.data() + off, m.data() + off, v.data() + off,
                                              amsgrad ? vmax.data() + off : nullptr, n, c);
                    sft::kernels::reference::adam_update(p2.data() + off, g.data() + off, m2.data() + off, v2.data() + off,
                                                         amsgrad ? vmax2.data() + off : nullptr, n, c);
                    for (std::size_t i = 0; i < len; ++i) {
                        if (i < off || i >= off + n) {
                            // Outside the range: untouched (both sides started from the same values).
                            REQUIRE(p[i] == p2[i]);
                            REQUIRE(m[i] == m2[i]);
                            REQUIRE(v[i] == v2[i]);
                            REQUIRE(vmax[i] == vmax2[i]);
                            continue;
                        }
                        worst = std::max({worst, ulps(p[i], p2[i]), ulps(m[i], m2[i]), ulps(v[i], v2[i]), ulps(vmax[i], vmax2[i])});
                    }
                }
    INFO("max distance " << worst << " eps (" << sft::kernels::simd_arch_name() << ")");
    // Same operations in the same order: bit-identical under -ffp-contract=off; GCC's default
    // contraction of a*b+c into FMA (gnu++17) moves the last bits differently on each side.
    CHECK(worst <= 4.0);
}

template <class T>
void sgd_simd_vs_reference() {
    double worst = 0.0;
    for (double wd : {0.0, 0.01})
        for (int mode = 0; mode < 3; ++mode)
            for (bool first : {true, false})
                for (std::size_t n : sizes)
                    for (std::size_t off : offsets) {
                        INFO("wd " << wd << " mode " << mode << " first " << first << " n " << n << " offset " << off);
                        const std::size_t len = off + n + guard;
                        auto p = random_values<T>(len, n + off, -1, 1), g = random_values<T>(len, n + off + 9, -2, 2);
                        auto b = random_values<T>(len, n + off + 5, -1, 1);
                        auto p2 = p, b2 = b;
                        SgdCoefficients<T> c;
                        c.neg_lr = T(-0.05);
                        c.weight_decay = static_cast<T>(wd);
                        c.momentum = mode ? T(0.9) : T(0);
                        c.one_minus_dampening = static_cast<T>(1.0 - 0.1);
                        c.nesterov = mode == 2;
                        sft::kernels::sgd_update(p.data() + off, g.data() + off, mode ? b.data() + off : nullptr, n, c, first);
                        sft::kernels::reference::sgd_update(p2.data() + off, g.data() + off, mode ? b2.data() + off : nullptr, n, c, first);
                        for (std::size_t i = 0; i < len; ++i) {
                            if (i < off || i >= off + n) {
                                REQUIRE(p[i] == p2[i]);
                                REQUIRE(b[i] == b2[i]);
                                continue;
                            }
                            worst = std::max({worst, ulps(p[i], p2[i]), ulps(b[i], b2[i])});
                        }
                    }
    INFO("max distance " << worst << " eps");
    CHECK(worst <= 4.0);
}

}  // namespace

TEST_CASE("adam_update: SIMD matches the scalar reference on odd sizes and offsets", "[kernels][adamw]") {
    adam_simd_vs_reference<float>();
    adam_simd_vs_reference<double>();
}

TEST_CASE("sgd_update: SIMD matches the scalar reference on odd sizes and offsets", "[kernels][adamw]") {
    sgd_simd_vs_reference<float>();
    sgd_simd_vs_reference<double>();
}

TEST_CASE("adam_update: five steps follow torch's AdamW and Adam formulas", "[kernels][adamw]") {
    // The rule written out in long double, step by step, as torch.optim.AdamW / Adam (1.13).
    const std::size_t n = 19;
    const double lr = 1e-2, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
    for (bool decoupled : {true, false})
        for (bool amsgrad : {false, true}) {
            INFO("decoupled " << decoupled << " amsgrad " << amsgrad);
            auto p = random_values<float>(n, 1, -1, 1);
            std::vector<float> m(n, 0.0f), v(n, 0.0f), vmax(n, 0.0f);
            std::vector<long double> P(p.begin(), p.end()), M(n, 0), V(n, 0), VM(n, 0);
            for (int t = 1; t <= 5; ++t) {
                const auto g = random_values<float>(n, 100 + t, -1, 1);
                const auto c = sft::kernels::adam_coefficients<float>(lr, b1, b2, eps, wd, decoupled, t);
                sft::kernels::adam_update(p.data(), g.data(), m.data(), v.data(), amsgrad ? vmax.data() : nullptr, n, c);
                for (std::size_t i = 0; i < n; ++i) {
                    long double gi = g[i];
                    if (decoupled) P[i] *= 1 - lr * wd;
                    else gi += wd * P[i];
                    M[i] = b1 * M[i] + (1 - b1) * gi;
                    V[i] = b2 * V[i] + (1 - b2) * gi * gi;
                    VM[i] = std::max(VM[i], V[i]);
                    const long double vh = amsgrad ? VM[i] : V[i];
                    const long double bc1 = 1 - std::pow((long double)b1, t), bc2 = 1 - std::pow((long double)b2, t);
                    P[i] -= lr / bc1 * M[i] / (std::sqrt(vh) / std::sqrt(bc2) + eps);
                }
            }
            for (std::size_t i = 0; i < n; ++i) {
                CHECK(p[i] == Approx(static_cast<double>(P[i])).epsilon(1e-5).margin(1e-6));
                CHECK(m[i] == Approx(static_cast<double>(M[i])).epsilon(1e-5).margin(1e-7));
                CHECK(v[i] == Approx(static_cast<double>(V[i])).epsilon(1e-5).margin(1e-8));
            }
        }
}

TEST_CASE("sgd_update: five steps follow torch's SGD formula", "[kernels][adamw]") {
    const std::size_t n = 21;
    const double lr = 0.1, mu = 0.9, tau = 0.2, wd = 0.05;
    for (int mode = 0; mode < 3; ++mode) {
        INFO("mode " << mode);
        const double damp = mode == 2 ? 0.0 : tau;  // nesterov needs zero dampening
        auto p = random_values<double>(n, 3, -1, 1);
        std::vector<double> buf(n, 123.0);  // garbage before the first step: the first step overwrites it
        std::vector<long double> P(p.begin(), p.end()), B(n, 0);
        for (int t = 1; t <= 5; ++t) {
            const auto g = random_values<double>(n, 200 + t, -1, 1);
            SgdCoefficients<double> c;
            c.neg_lr = -lr;
            c.weight_decay = wd;
            c.momentum = mode ? mu : 0.0;
            c.one_minus_dampening = 1.0 - damp;
            c.nesterov = mode == 2;
            sft::kernels::sgd_update(p.data(), g.data(), mode ? buf.data() : nullptr, n, c, t == 1);
            for (std::size_t i = 0; i < n; ++i) {
                long double d = g[i] + wd * P[i];
                if (mode) {
                    B[i] = t == 1 ? d : mu * B[i] + (1 - damp) * d;
                    d = mode == 2 ? d + mu * B[i] : B[i];
                }
                P[i] -= lr * d;
            }
        }
        for (std::size_t i = 0; i < n; ++i) CHECK(p[i] == Approx(static_cast<double>(P[i])).epsilon(1e-13).margin(1e-14));
    }
}

TEST_CASE("add_squares: lane i % 8 gets x[i]^2 in double, on odd sizes", "[kernels][adamw][clip]") {
    for (std::size_t n : sizes) {
        INFO("n " << n);
        const auto x = random_values<float>(n, n + 11, -3, 3);
        double acc[sft::kernels::square_lanes] = {1, 2, 3, 4, 5, 6, 7, 8};
        double expected[sft::kernels::square_lanes] = {1, 2, 3, 4, 5, 6, 7, 8};
        sft::kernels::add_squares(x.data(), n, acc);
        for (std::size_t i = 0; i < n; ++i) expected[i % 8] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
        // A float squared is exact in double, so the same additions in the same order agree to the bit.
        for (std::size_t k = 0; k < sft::kernels::square_lanes; ++k) CHECK(acc[k] == expected[k]);
    }
}

namespace {

template <class T>
bool subnormal(T x) {
    return x != T(0) && std::abs(x) < std::numeric_limits<T>::min();
}

// Zero gradients for `steps` steps (a dead unit): m and SGD's buffer decay geometrically through
// the subnormal range, v more slowly. Every stored moment must be 0 or normal after every step,
// on the SIMD path (body and tail: n = 37) and in the reference, which must agree to the bit.
template <class T>
void moments_never_subnormal() {
    const std::size_t n = 37;
    const T tiny = std::numeric_limits<T>::min();
    std::vector<T> p(n, T(0.01)), g(n, T(0)), m(n), v(n), p2, m2, v2;
    for (std::size_t i = 0; i < n; ++i) {
        m[i] = T(1e-3) * T(i + 1);
        v[i] = tiny * T(1 + 0.00002 * double(i));  // just above the smallest normal: 0.999 v is below it
    }
    p2 = p, m2 = m, v2 = v;
    const int steps = std::is_same_v<T, float> ? 2000 : 16000;  // m: 0.9^t from 1e-3 below 1.4e-45 (float) / 4.9e-324
    bool m_reached_zero = false;
    for (int t = 1; t <= steps; ++t) {
        const auto c = sft::kernels::adam_coefficients<T>(1e-3, 0.9, 0.999, 1e-8, 0.01, true, t);
        sft::kernels::adam_update(p.data(), g.data(), m.data(), v.data(), static_cast<T*>(nullptr), n, c);
        sft::kernels::reference::adam_update(p2.data(), g.data(), m2.data(), v2.data(), static_cast<T*>(nullptr), n, c);
        for (std::size_t i = 0; i < n; ++i) {
            INFO("step " << t << " element " << i << " m " << m[i] << " v " << v[i]);
            REQUIRE_FALSE(subnormal(m[i]));
            REQUIRE_FALSE(subnormal(v[i]));
            REQUIRE(m[i] == m2[i]);
            REQUIRE(v[i] == v2[i]);
            REQUIRE(ulps(p[i], p2[i]) <= 4.0);  // as above: GCC may contract p's update into an FMA on one side
        }
        p2 = p;  // the next step from the same parameters (the moments are equal already)
        if (t == 1)
            for (std::size_t i = 0; i < n; ++i) CHECK(v[i] == T(0));  // 0.999 v < the smallest normal: flushed at once
        m_reached_zero = std::all_of(m.begin(), m.end(), [](T x) { return x == T(0); });
    }
    CHECK(m_reached_zero);
    // A moment that stays normal is the plain rule's value: m = 0.9 m + 0.1 g.
    std::vector<T> mm{T(0.5)}, vv{T(0.25)}, pp{T(1)}, gg{T(0.125)};
    const auto c = sft::kernels::adam_coefficients<T>(1e-3, 0.9, 0.999, 1e-8, 0.0, true, 1);
    sft::kernels::adam_update(pp.data(), gg.data(), mm.data(), vv.data(), static_cast<T*>(nullptr), 1, c);
    CHECK(mm[0] == T(0.5) * c.beta1 + c.one_minus_beta1 * T(0.125));
    CHECK(vv[0] == T(0.25) * c.beta2 + c.one_minus_beta2 * T(0.125) * T(0.125));

    std::vector<T> q(n, T(1)), b(n), q2, b2;
    for (std::size_t i = 0; i < n; ++i) b[i] = T(1e-3) * T(i + 1);
    q2 = q, b2 = b;
    SgdCoefficients<T> s;
    s.neg_lr = T(-0.01);
    s.momentum = T(0.5);
    for (int t = 0; t < 300; ++t) {  // 0.5^t from 1e-3 reaches the subnormal range after ~116 steps (float)
        sft::kernels::sgd_update(q.data(), g.data(), b.data(), n, s, false);
        sft::kernels::reference::sgd_update(q2.data(), g.data(), b2.data(), n, s, false);
        for (std::size_t i = 0; i < n; ++i) {
            INFO("SGD step " << t << " element " << i << " buf " << b[i]);
            REQUIRE_FALSE(subnormal(b[i]));
            REQUIRE(b[i] == b2[i]);
        }
    }
    if constexpr (std::is_same_v<T, float>) CHECK(std::all_of(b.begin(), b.end(), [](T x) { return x == T(0); }));
}

}  // namespace

TEST_CASE("adam_update and sgd_update store moments below the smallest normal as 0", "[kernels][adamw]") {
    // Subnormal moments cost a microcode assist per operation on x86 (the slowdown they caused in
    // the reference MLP is in kernels/adamw.hpp).
    moments_never_subnormal<float>();
    moments_never_subnormal<double>();
}
