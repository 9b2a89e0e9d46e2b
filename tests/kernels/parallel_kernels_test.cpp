// The threaded elementwise kernels and reductions give the same bits for 1 and 2 threads and
// equal their single-threaded (serial::) versions; the fused ReLU backward + bias column sums
// equals relu_backward followed by add_col_sums bit for bit. Sizes are above the threading
// threshold, with column counts that are not multiples of the SIMD width (scalar tails).
#include <sft/kernels/activation.hpp>
#include <sft/kernels/elementwise.hpp>
#include <sft/kernels/layernorm.hpp>
#include <sft/kernels/reduce.hpp>
#include <sft/parallel.hpp>
#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <vector>

namespace {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -3.0, double hi = 3.0) {
    sft::Rng rng(seed);
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.uniform(lo, hi));
    return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs f at 1 and at 2 threads and returns both results.
template <class T>
std::pair<std::vector<T>, std::vector<T>> at_1_and_2_threads(const std::function<std::vector<T>()>& f) {
    const std::size_t before = sft::get_num_threads();
    sft::set_num_threads(1);
    std::vector<T> one = f();
    sft::set_num_threads(2);
    std::vector<T> two = f();
    sft::set_num_threads(before);
    return {one, two};
}

struct Dims {
    std::size_t rows, cols;
};
const Dims dims_cases[] = {{200, 333}, {37, 2000}, {128, 512}, {3000, 17}, {5, 7}};

}  // namespace

TEMPLATE_TEST_CASE("Threaded kernels: 1 and 2 threads give the same bits as the serial kernels", "[kernels][threads]", float, double) {
    using T = TestType;
    for (const Dims d : dims_cases) {
        const std::size_t n = d.rows * d.cols;
        INFO("rows " << d.rows << ", cols " << d.cols);
        const std::vector<T> x = random_vector<T>(n, 1), dy = random_vector<T>(n, 2), bias = random_vector<T>(d.cols, 3);

        // Column sums (the bias gradient), accumulating into a non-zero start.
        const std::vector<T> start = random_vector<T>(d.cols, 4);
        auto col = at_1_and_2_threads<T>([&] {
            std::vector<T> out = start;
            sft::kernels::add_col_sums(x.data(), d.rows, d.cols, out.data());
            return out;
        });
        std::vector<T> col_serial = start;
        sft::kernels::serial::add_col_sums(x.data(), d.rows, d.cols, d.cols, col_serial.data());
        CHECK(same_bits(col.first, col.second));
        CHECK(same_bits(col.first, col_serial));

        // The fused ReLU backward + column sums against relu_backward then add_col_sums.
        auto fused = at_1_and_2_threads<T>([&] {
            std::vector<T> dz(n), db = start;
            sft::kernels::relu_backward_bias(dy.data(), x.data(), dz.data(), d.rows, d.cols, db.data());
            dz.insert(dz.end(), db.begin(), db.end());
            return dz;
        });
        std::vector<T> dz(n), db = start;
        sft::kernels::serial::relu_backward(dy.data(), x.data(), dz.data(), n);
        sft::kernels::serial::add_col_sums(dz.data(), d.rows, d.cols, d.cols, db.data());
        dz.insert(dz.end(), db.begin(), db.end());
        CHECK(same_bits(fused.first, fused.second));
        CHECK(same_bits(fused.first, dz));
        std::size_t zeros = 0;
        for (std::size_t i = 0; i < n; ++i) zeros += dz[i] == T(0);
        CHECK(zeros > n / 4);  // both sides of the ReLU are exercised
        CHECK(zeros < 3 * n / 4);

        // Bias add and the activations: elementwise, so equal to the serial kernels.
        auto biased = at_1_and_2_threads<T>([&] {
            std::vector<T> y = x;
            sft::kernels::add_bias(y.data(), bias.data(), d.rows, d.cols);
            return y;
        });
        CHECK(same_bits(biased.first, biased.second));
        using Unary = void (*)(const T*, T*, std::size_t) noexcept;
        using Binary = void (*)(const T*, const T*, T*, std::size_t) noexcept;
        const std::pair<Unary, Unary> unary[] = {
            {&sft::kernels::relu_forward<T>, &sft::kernels::serial::relu_forward<T>},
            {&sft::kernels::gelu_forward<T>, &sft::kernels::serial::gelu_forward<T>},
            {&sft::kernels::gelu_tanh_forward<T>, &sft::kernels::serial::gelu_tanh_forward<T>},
            {&sft::kernels::tanh_forward<T>, &sft::kernels::serial::tanh_forward<T>},
            {&sft::kernels::sigmoid_forward<T>, &sft::kernels::serial::sigmoid_forward<T>}};
        for (const auto& [threaded, serial] : unary) {
            auto r = at_1_and_2_threads<T>([&] {
                std::vector<T> y(n);
                threaded(x.data(), y.data(), n);
                return y;
            });
            std::vector<T> want(n);
            serial(x.data(), want.data(), n);
            CHECK(same_bits(r.first, r.second));
            CHECK(same_bits(r.first, want));
        }
        const std::pair<Binary, Binary> binary[] = {
            {&sft::kernels::relu_backward<T>, &sft::kernels::serial::relu_backward<T>},
            {&sft::kernels::gelu_backward<T>, &sft::kernels::serial::gelu_backward<T>},
            {&sft::kernels::gelu_tanh_backward<T>, &sft::kernels::serial::gelu_tanh_backward<T>},
            {&sft::kernels::tanh_backward<T>, &sft::kernels::serial::tanh_backward<T>},
            {&sft::kernels::sigmoid_backward<T>, &sft::kernels::serial::sigmoid_backward<T>},
            {&sft::kernels::mul<T>, &sft::kernels::serial::mul<T>}};
        for (const auto& [threaded, serial] : binary) {
            auto r = at_1_and_2_threads<T>([&] {
                std::vector<T> y(n);
                threaded(dy.data(), x.data(), y.data(), n);
                return y;
            });
            std::vector<T> want(n);
            serial(dy.data(), x.data(), want.data(), n);
            CHECK(same_bits(r.first, r.second));
            CHECK(same_bits(r.first, want));
        }

        // LayerNorm's parameter gradients by column blocks against the per-row kernel.
        std::vector<T> mean(d.rows), rstd(d.rows), y(n);
        for (std::size_t r = 0; r < d.rows; ++r)
            sft::kernels::layernorm_forward_row<T>(x.data() + r * d.cols, d.cols, nullptr, nullptr, T(1e-5), y.data() + r * d.cols, &mean[r], &rstd[r]);
        auto params = at_1_and_2_threads<T>([&] {
            std::vector<T> dw = start, dbias = bias;
            sft::kernels::layernorm_backward_params<T>(dy.data(), x.data(), d.rows, d.cols, mean.data(), rstd.data(), dw.data(), dbias.data());
            dw.insert(dw.end(), dbias.begin(), dbias.end());
            return dw;
        });
        std::vector<T> dw = start, dbias = bias;
        for (std::size_t r = 0; r < d.rows; ++r)
            sft::kernels::layernorm_backward_row<T>(dy.data() + r * d.cols, x.data() + r * d.cols, d.cols, mean[r], rstd[r], nullptr,
                                                    nullptr, dw.data(), dbias.data());
        dw.insert(dw.end(), dbias.begin(), dbias.end());
        CHECK(same_bits(params.first, params.second));
        CHECK(same_bits(params.first, dw));
    }
}

TEST_CASE("Threaded kernels: the fused ReLU backward without a bias gradient is relu_backward", "[kernels][threads]") {
    const std::size_t rows = 70, cols = 1000, n = rows * cols;
    const std::vector<float> y = random_vector<float>(n, 5), dy = random_vector<float>(n, 6);
    std::vector<float> dz(n), want(n);
    sft::kernels::relu_backward_bias<float>(dy.data(), y.data(), dz.data(), rows, cols, nullptr);
    sft::kernels::relu_backward(dy.data(), y.data(), want.data(), n);
    CHECK(same_bits(dz, want));
}
