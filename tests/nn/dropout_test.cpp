#include <sft/nn/dropout.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>
#include <limits>
#include <utility>

using sft::Shape;
using sft::Tensor;
using sft::nn::Dropout;

TEST_CASE("Dropout: p is checked, named in the error", "[nn][dropout]") {
    CHECK_THROWS_WITH(Dropout<float>(-0.1), Catch::Contains("Dropout") && Catch::Contains("p = -0.1"));
    CHECK_THROWS_WITH(Dropout<float>(1.5), Catch::Contains("p = 1.5") && Catch::Contains("0 <= p <= 1"));
    CHECK_THROWS_AS(Dropout<float>(std::numeric_limits<double>::quiet_NaN()), sft::Error);
    CHECK(Dropout<float>().p() == 0.5);
    CHECK(Dropout<float>(1.0).p() == 1.0);
}

TEST_CASE("Dropout: training keeps 1 - p of the elements, scaled by 1 / (1 - p), backward uses the same mask", "[nn][dropout]") {
    const double p = 0.3;
    Dropout<float> drop(p, 42);
    const std::size_t n = 100000;
    Tensor<float> x({100, 1000});
    sft::Rng rng(1);
    for (auto& v : x) v = static_cast<float>(rng.uniform(0.5, 1.5));  // never 0: a zero output means dropped
    const Tensor<float> y = drop.forward(x);
    REQUIRE(y.shape() == x.shape());
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    std::size_t dropped = 0;
    double sum_x = 0, sum_y = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (y[i] == 0.0f) ++dropped;
        else REQUIRE(y[i] == x[i] * scale);
        sum_x += x[i];
        sum_y += y[i];
    }
    // Binomial(n, 0.3): standard deviation sqrt(n p (1 - p)) = 145; allow 5 of them.
    CHECK(std::abs(double(dropped) - p * n) <= 5 * std::sqrt(n * p * (1 - p)));
    CHECK(sum_y == Approx(sum_x).epsilon(0.01));  // the expectation is preserved
    Tensor<float> g({100, 1000});
    for (auto& v : g) v = static_cast<float>(rng.uniform(-1, 1));
    const Tensor<float> dx = drop.backward(g);
    for (std::size_t i = 0; i < n; ++i) REQUIRE(dx[i] == (y[i] == 0.0f ? 0.0f : g[i] * scale));
    CHECK_THROWS_WITH(drop.backward(g), Catch::Contains("before forward"));  // the mask was released
    drop.forward(x);
    CHECK_FALSE(drop.backward(g, false).defined());
    // A second forward draws a new mask.
    const Tensor<float> y2 = drop.forward(x);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < n; ++i) differ += (y[i] == 0.0f) != (y2[i] == 0.0f);
    CHECK(differ > n / 10);
}

TEST_CASE("Dropout: eval mode and p == 0 are the identity (no copy), p == 1 zeroes", "[nn][dropout]") {
    Tensor<double> x({3, 4}, 2.0);
    Dropout<double> drop(0.5, 3);
    drop.eval();
    const Tensor<double> y = drop.forward(x);
    CHECK(y.data() == x.data());
    const Tensor<double> g({3, 4}, 1.5);
    CHECK(drop.backward(g).data() == g.data());
    drop.train();
    CHECK(drop.forward(x).data() != x.data());

    Dropout<double> none(0.0);
    CHECK(none.forward(x).data() == x.data());
    CHECK(none.backward(g).data() == g.data());

    Dropout<double> all(1.0);
    const Tensor<double> z = all.forward(x);
    for (double v : z) CHECK(v == 0.0);
    for (double v : all.backward(g)) CHECK(v == 0.0);

    // Inside a Sequential, model.eval() reaches the layer.
    sft::nn::Sequential<double> model;
    model.add("drop", Dropout<double>(0.9, 1));
    model.eval();
    CHECK(model.forward(x).data() == x.data());
}

TEST_CASE("Dropout: masks are reproducible from a seed, and default_rng follows sft::manual_seed", "[nn][dropout]") {
    const Tensor<float> x({64}, 1.0f);
    auto mask_of = [&](Dropout<float>& d) {
        const Tensor<float> y = d.forward(x);
        std::vector<bool> m;
        for (float v : y) m.push_back(v != 0.0f);
        return m;
    };
    Dropout<float> a(0.5, 7), b(0.5, 7);
    const auto first = mask_of(a);
    CHECK(mask_of(b) == first);
    const auto second = mask_of(a);
    CHECK_FALSE(second == first);
    a.manual_seed(7);
    CHECK(mask_of(a) == first);
    b.manual_seed(7);
    CHECK(mask_of(b) == first);

    Dropout<float> c(0.5), d(0.5);
    sft::manual_seed(123);
    const auto from_default = mask_of(c);
    sft::manual_seed(123);
    CHECK(mask_of(d) == from_default);
    CHECK(&c.generator() == &sft::default_rng());

    // Moving a layer that owns its generator keeps the generator's state.
    Dropout<float> e(0.5, 99), f(0.5, 99);
    mask_of(e);
    Dropout<float> moved(std::move(e));
    mask_of(f);
    CHECK(mask_of(moved) == mask_of(f));
}

TEST_CASE("Dropout: errors name the layer", "[nn][dropout]") {
    sft::nn::Sequential<float> model;
    model.add("drop", Dropout<float>(0.2));
    auto& drop = model.at("drop");
    CHECK_THROWS_WITH(drop.backward(Tensor<float>({2})), Catch::Contains("Dropout 'drop'") && Catch::Contains("before forward"));
    CHECK_THROWS_WITH(drop.forward(Tensor<float>()), Catch::Contains("Dropout 'drop'") && Catch::Contains("undefined"));
    drop.forward(Tensor<float>({2, 3}, 1.0f));
    CHECK_THROWS_WITH(drop.backward(Tensor<float>({3, 2})), Catch::Contains("Dropout 'drop'") && Catch::Contains("[3, 2]"));
}

TEST_CASE("Dropout: finite-difference gradient check in double with a fixed mask", "[nn][dropout][gradcheck]") {
    Dropout<double> drop(0.4, 0);
    const Tensor<double> x = sft::testing::random_tensor({5, 9}, 4);
    sft::testing::check_input_grad(drop, x, 1e-7, 1234, 1e-6, [&] { drop.manual_seed(17); });
    drop.eval();
    sft::testing::check_input_grad(drop, x, 1e-7);
}

TEST_CASE("Dropout: a mask above the pool's grain is drawn in ranges on the pool, the same at 1 and 2 threads", "[nn][dropout][threads]") {
    const Tensor<float> x({300000}, 2.0f);
    std::vector<Tensor<float>> ys;
    for (std::size_t threads : {1u, 2u}) {
        sft::set_num_threads(threads);
        Dropout<float> d(0.3, 5);
        ys.push_back(d.forward(x).clone());
        const Tensor<float> dx = d.backward(x);
        for (std::size_t i = 0; i < x.numel(); i += 997) REQUIRE(dx[i] == ys.back()[i]);  // dy = 2 everywhere: dx = y
    }
    sft::set_num_threads(sft::detail::hardware_threads());
    REQUIRE(std::memcmp(ys[0].data(), ys[1].data(), x.numel() * sizeof(float)) == 0);
    std::size_t kept = 0;
    for (float v : ys[0]) {
        REQUIRE((v == 0.0f || v == static_cast<float>(2.0 / 0.7)));
        kept += v != 0.0f;
    }
    // 0.7 of 300000 kept: the binomial's standard deviation is 251, so 5 sigma is 1255.
    CHECK(std::fabs(static_cast<double>(kept) - 210000.0) < 1255.0);
    // Neighbouring ranges are not copies of each other (each element has its own counter).
    CHECK(std::memcmp(ys[0].data(), ys[0].data() + 16384, 16384 * sizeof(float)) != 0);
}
