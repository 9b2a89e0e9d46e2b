#include "kernel_test_util.hpp"

#include <sft/kernels/gemm.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using sft::kernels::GemmActivation;
using sft::testing::eps;
using sft::testing::TestBuffer;

namespace {

struct ThreadCountGuard {
    ~ThreadCountGuard() { sft::set_num_threads(sft::detail::hardware_threads()); }
};

struct Case {
    std::size_t m, n, k;
};

/// gemm_bias_act against gemm_eigen followed by a separate bias and ReLU pass, with C's padding
/// between rows and the guards around every buffer untouched; returns C.
template <class T>
std::vector<T> check_fused(const Case& cs, bool ta, bool tb, bool with_bias, GemmActivation act, std::uint64_t seed) {
    const std::size_t m = cs.m, n = cs.n, k = cs.k;
    const std::size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
    INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb << " bias " << with_bias << " relu "
              << (act == GemmActivation::relu));
    TestBuffer<T> a((ta ? k : m) * lda, 1), b((tb ? n : k) * ldb, 2), c(m * ldc, 1), bias(n, 3);
    a.fill_uniform(seed, -1, 1);
    b.fill_uniform(seed + 1, -1, 1);
    bias.fill_uniform(seed + 2, -1, 1);
    for (std::size_t i = 0; i < m * ldc; ++i) c[i] = i % 3 == 0 ? std::numeric_limits<T>::quiet_NaN() : T(7);  // C is ignored
    const std::vector<T> c0 = c.vec();
    std::vector<T> want = c0;
    sft::kernels::gemm_eigen<T>(ta, tb, m, n, k, T(1), a.data(), lda, b.data(), ldb, T(0), want.data(), ldc);
    std::vector<T> mag(m * ldc, T(0));  // sum of |terms| for the error bound
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            long double s = 0;
            for (std::size_t p = 0; p < k; ++p)
                s += std::fabs(static_cast<long double>(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]));
            mag[i * ldc + j] = static_cast<T>(s) + (with_bias ? std::fabs(bias[j]) : T(0));
            T& w = want[i * ldc + j];
            if (with_bias) w += bias[j];
            if (act == GemmActivation::relu) w = w < T(0) ? T(0) : w;
        }
    sft::kernels::gemm_bias_act<T>(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, with_bias ? bias.data() : nullptr, act, c.data(), ldc);
    bool saw_zero = false, saw_positive = false;
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            INFO("C(" << i << ", " << j << ")");
            const T got = c[i * ldc + j];
            REQUIRE(std::fabs(got - want[i * ldc + j]) <= 2 * (k + 3) * eps<T>() * mag[i * ldc + j] + 1e-30);
            if (act == GemmActivation::relu) REQUIRE(got >= T(0));
            saw_zero = saw_zero || got == T(0);
            saw_positive = saw_positive || got > T(0);
        }
        for (std::size_t j = n; j < ldc && i * ldc + j < m * ldc; ++j)  // padding between rows untouched
            REQUIRE((std::isnan(c0[i * ldc + j]) ? std::isnan(c[i * ldc + j]) : c[i * ldc + j] == c0[i * ldc + j]));
    }
    if (act == GemmActivation::relu && m * n >= 16) {  // the cases cut both sides of zero
        CHECK(saw_zero);
        CHECK(saw_positive);
    }
    REQUIRE(a.guards_intact());
    REQUIRE(b.guards_intact());
    REQUIRE(c.guards_intact());
    REQUIRE(bias.guards_intact());
    return c.vec();
}

}  // namespace

TEMPLATE_TEST_CASE("kernels: gemm_bias_act equals gemm_eigen, then + bias, then ReLU, for every transpose, odd sizes and strides",
                   "[kernels][gemm_bias_act]", float, double) {
    using T = TestType;
    // Sizes around the micro-tile, several k blocks (kc_max is 256 floats, 128 doubles) so that the
    // epilogue must wait for the last one, an A block taller than mc_max (240).
    const Case cases[] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {1, 31, 9}, {13, 33, 65}, {12, 32, 16}, {25, 65, 300}, {37, 70, 513}, {250, 40, 20}};
    std::uint64_t seed = 11;
    for (const auto& cs : cases)
        for (int trans = 0; trans < 4; ++trans)
            for (int variant = 0; variant < 4; ++variant)
                check_fused<T>(cs, trans & 1, trans & 2, variant & 1, variant & 2 ? GemmActivation::relu : GemmActivation::none, seed += 3);
}

TEMPLATE_TEST_CASE("kernels: gemm_bias_act gives bit-identical results at 1 and 2 threads", "[kernels][gemm_bias_act][thread_pool]", float,
                   double) {
    using T = TestType;
    ThreadCountGuard guard;
    // Split along n (op(A) packed once and shared) or along m; the reference workload's forward shapes.
    const Case cases[] = {{128, 512, 784}, {32, 512, 784}, {128, 256, 512}, {301, 67, 270}};
    for (const auto& cs : cases)
        for (int trans = 0; trans < 4; trans += 2) {
            std::vector<T> first;
            for (std::size_t threads : {1, 2}) {
                sft::set_num_threads(threads);
                INFO("threads " << threads);
                const std::vector<T> c = check_fused<T>(cs, trans & 1, trans & 2, true, GemmActivation::relu, 5);
                if (first.empty()) first = c;
                else REQUIRE(std::memcmp(c.data(), first.data(), c.size() * sizeof(T)) == 0);
            }
        }
}

TEST_CASE("kernels: gemm_bias_act on a hand-computed product, NaN through ReLU, k == 0", "[kernels][gemm_bias_act]") {
    // [[1, 2], [3, 4]] x [[5, 6], [-7, -8]] = [[-9, -10], [-13, -14]]; + bias [10, 20] = [[1, 10], [-3, 6]].
    const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, -7, -8}, bias = {10, 20};
    std::vector<float> c(4, std::numeric_limits<float>::quiet_NaN());
    sft::kernels::gemm_bias_act<float>(false, false, 2, 2, 2, a.data(), 2, b.data(), 2, bias.data(), GemmActivation::none, c.data(), 2);
    CHECK(c == std::vector<float>{1, 10, -3, 6});
    sft::kernels::gemm_bias_act<float>(false, false, 2, 2, 2, a.data(), 2, b.data(), 2, bias.data(), GemmActivation::relu, c.data(), 2);
    CHECK(c == std::vector<float>{1, 10, 0, 6});
    sft::kernels::gemm_bias_act<float>(false, false, 2, 2, 2, a.data(), 2, b.data(), 2, nullptr, GemmActivation::relu, c.data(), 2);
    CHECK(c == std::vector<float>{0, 0, 0, 0});
    // A NaN in the input stays NaN through ReLU (torch.relu(nan) is nan).
    const std::vector<float> a_nan = {std::numeric_limits<float>::quiet_NaN(), 0, 0, 0};
    sft::kernels::gemm_bias_act<float>(false, false, 2, 2, 2, a_nan.data(), 2, b.data(), 2, bias.data(), GemmActivation::relu, c.data(), 2);
    CHECK(std::isnan(c[0]));
    CHECK(std::isnan(c[1]));
    CHECK(c[2] == 10);
    CHECK(c[3] == 20);
    // k == 0: the product is empty, C = act(bias).
    const std::vector<float> bias2 = {-1, 2};
    sft::kernels::gemm_bias_act<float>(false, false, 2, 2, 0, nullptr, 1, nullptr, 2, bias2.data(), GemmActivation::relu, c.data(), 2);
    CHECK(c == std::vector<float>{0, 2, 0, 2});
}
