#include <sft/io/safetensors.hpp>
#include <sft/nn/embedding.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>

#include "support/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

using sft::Shape;
using sft::Tensor;
using sft::nn::Embedding;
using sft::nn::EmbeddingOptions;

namespace {
using Fixture = std::map<std::string, Tensor<float>>;

Fixture load_fixture(const std::string& file) { return sft::io::load_safetensors<float>(std::string(SFT_REFERENCE_DIR) + "/" + file); }

const Tensor<float>& at(const Fixture& f, const std::string& key) {
    auto it = f.find(key);
    if (it == f.end()) FAIL("fixture has no tensor '" << key << "'");
    return it->second;
}

// max |a - b| / max(1, |b|) over the elements; the shapes must agree.
double max_err(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
    return m;
}
}  // namespace

TEST_CASE("Embedding: token ids [batch, time] -> [batch, time, dim], int64 or T indices", "[nn][embedding]") {
    sft::Rng rng(1);
    Embedding<float> wte(50, 8, std::nullopt, rng);
    CHECK(wte.weight().value().shape() == Shape{50, 8});
    CHECK(wte.state_dict().count("weight") == 1);
    Tensor<std::int64_t> ids({2, 3}, std::vector<std::int64_t>{0, 49, 7, 7, 1, 0});
    Tensor<float> y = wte.forward(ids);
    REQUIRE(y.shape() == Shape{2, 3, 8});
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t t = 0; t < 3; ++t)
            for (std::size_t j = 0; j < 8; ++j) CHECK(y(b, t, j) == wte.weight().value()(std::size_t(ids(b, t)), j));
    Tensor<float> y2 = wte.forward(ids.to<float>());
    CHECK(std::equal(y.begin(), y.end(), y2.begin(), y2.end()));
    CHECK(wte.forward(Tensor<std::int64_t>(Shape{}, std::int64_t(3))).shape() == Shape{8});  // a single id
    CHECK(wte.forward(Tensor<std::int64_t>({2, 2, 2})).shape() == Shape{2, 2, 2, 8});

    // Inside a Sequential the ids travel as T values.
    sft::nn::Sequential<float> model;
    model.add("wte", Embedding<float>(10, 4));
    model.add("head", sft::nn::Linear<float>(4, 3));
    CHECK(model.forward(Tensor<float>({2, 5}, 3.0f)).shape() == Shape{2, 5, 3});
    model.backward(Tensor<float>({2, 5, 3}, 1.0f));
    CHECK(model.parameters()[0]->grad()(3, 0) != 0.0f);
}

TEST_CASE("Embedding: init N(0, 1) as PyTorch, padding_idx row zero and without gradient", "[nn][embedding]") {
    sft::Rng rng(2);
    Embedding<double> emb(EmbeddingOptions(400, 50).padding_idx(-1), rng);
    REQUIRE(emb.padding_idx().has_value());
    CHECK(*emb.padding_idx() == 399);
    double sum = 0, sq = 0;
    const auto& w = emb.weight().value();
    for (std::size_t i = 0; i < 399 * 50; ++i) {
        sum += w[i];
        sq += w[i] * w[i];
    }
    const double n = 399 * 50, mean = sum / n, var = sq / n - mean * mean;
    CHECK(std::abs(mean) < 0.03);  // 4 standard errors of the mean of 19950 N(0, 1) draws
    CHECK(std::abs(var - 1) < 0.05);
    for (std::size_t j = 0; j < 50; ++j) CHECK(w(399, j) == 0.0);

    Tensor<std::int64_t> ids({4}, std::vector<std::int64_t>{399, 5, 399, 5});
    emb.forward(ids);
    Tensor<double> dx = emb.backward(Tensor<double>({4, 50}, 1.0));
    CHECK(dx.shape() == Shape{4});  // zeros: the output is piecewise constant in the ids
    for (double v : dx) CHECK(v == 0.0);
    for (std::size_t j = 0; j < 50; ++j) {
        CHECK(emb.weight().grad()(399, j) == 0.0);
        CHECK(emb.weight().grad()(5, j) == 2.0);  // repeated ids add up
    }
    CHECK_THROWS_WITH(emb.backward(Tensor<double>({4, 50}, 1.0)), Catch::Contains("before forward"));  // one backward per forward
    emb.forward(ids);
    CHECK_FALSE(emb.backward(Tensor<double>({4, 50}, 1.0), false).defined());
}

TEST_CASE("Embedding: errors name the index value and its position", "[nn][embedding]") {
    sft::nn::Sequential<float> model;
    model.add("wte", Embedding<float>(10, 4));
    auto& wte = static_cast<Embedding<float>&>(model.at("wte"));
    Tensor<std::int64_t> ids({2, 3}, std::vector<std::int64_t>{0, 1, 2, 3, 10, 5});
    try {
        wte.forward(ids);
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::invalid_argument);
        CHECK_THAT(e.what(), Catch::Contains("Embedding 'wte': index 10 at position [1, 1] of indices [2, 3]") && Catch::Contains("[0, 10)"));
    }
    ids[4] = -1;
    CHECK_THROWS_WITH(wte.forward(ids), Catch::Contains("index -1 at position [1, 1]"));
    Tensor<float> fids({3}, std::vector<float>{1.0f, 2.5f, 3.0f});
    CHECK_THROWS_WITH(model.forward(fids), Catch::Contains("Embedding 'wte': index 2.5 at position [1] of indices [3]"));
    fids[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(model.forward(fids), Catch::Contains("index nan at position [1]"));
    CHECK_THROWS_WITH(wte.forward(Tensor<std::int64_t>({1, 1, 1, 1})), Catch::Contains("Embedding 'wte': indices [1, 1, 1, 1]"));
    CHECK_THROWS_WITH(Embedding<float>(EmbeddingOptions(10, 4).padding_idx(10)), Catch::Contains("padding_idx 10"));
    CHECK_THROWS_AS(Embedding<float>(0, 4), sft::Error);
    Embedding<float> fresh(5, 2);
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({1, 2})), Catch::Contains("before forward"));
    fresh.forward(Tensor<std::int64_t>({3}));
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({3, 3})), Catch::Contains("grad_output [3, 3], expected [3, 2]"));
}

TEST_CASE("Embedding: finite-difference gradient of the weight in double", "[nn][embedding][gradcheck]") {
    // Without padding_idx: its row's gradient is zero by definition (PyTorch's), not by calculus.
    sft::Rng rng(3);
    Embedding<double> emb(7, 3, std::nullopt, rng);
    Tensor<double> ids({2, 4}, std::vector<double>{0, 2, 6, 6, 3, 2, 0, 1});
    sft::testing::check_param_grads(emb, ids, 1e-8);
}

TEST_CASE("Embedding: matches PyTorch (float32 fixtures), repeated ids and padding_idx", "[nn][embedding][reference]") {
    const Fixture f = load_fixture("layers_embedding.safetensors");
    auto run = [&](Embedding<float>& emb, const std::string& name) {
        INFO(name);
        const std::string p = name + ".";
        emb.load_state_dict({{"weight", at(f, p + "weight")}});
        const Tensor<std::int64_t> ids = at(f, p + "idx").to<std::int64_t>();
        const Tensor<float> y = emb.forward(ids);
        CHECK(max_err(y, at(f, p + "y")) == 0.0);  // a copy
        emb.backward(at(f, p + "gy"));
        CHECK(max_err(emb.weight().grad(), at(f, p + "dweight")) <= 1e-6);
    };
    Embedding<float> plain(10, 4);
    run(plain, "plain");
    Embedding<float> pad(10, 4, 2);
    run(pad, "pad");
    for (std::size_t j = 0; j < 4; ++j) CHECK(at(f, "pad.weight")(2, j) == 0.0f);  // torch zeroes the padding row too
}
