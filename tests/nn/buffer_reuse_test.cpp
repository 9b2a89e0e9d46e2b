// Buffer reuse of the layers and losses (no heap allocation in a steady-state training step),
// the release of saved tensors by backward, and the fused Linear + ReLU of Sequential.
//
// Allocations are counted by replacing the global operator new for the whole sft_test_nn binary:
// the replacement only counts, then allocates as usual, so the other tests are unaffected; the
// tests here only look at differences of the counter around the code they measure.
#include <sft/io/safetensors.hpp>
#include <sft/loss/cross_entropy.hpp>
#include <sft/loss/mse.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/dropout.hpp>
#include <sft/nn/flatten.hpp>
#include <sft/nn/layernorm.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include "support/counting_new.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

using sft_test::allocations;

using sft::Shape;
using sft::Tensor;
namespace nn = sft::nn;

namespace {

Tensor<float> random_float(const Shape& shape, std::uint64_t seed) {
    sft::Rng rng(seed);
    Tensor<float> t = Tensor<float>::empty(shape);
    for (auto& v : t) v = static_cast<float>(rng.uniform(-1.0, 1.0));
    return t;
}

Tensor<std::int64_t> random_targets(std::size_t n, std::size_t classes, std::uint64_t seed) {
    sft::Rng rng(seed);
    Tensor<std::int64_t> t = Tensor<std::int64_t>::empty({n});
    for (auto& v : t) v = static_cast<std::int64_t>(rng.randint(classes));
    return t;
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

// The MLP of the allocation test: every layer of the brief, sizes large enough that the
// threaded paths of the kernels run (64 x 1024 elements per activation).
nn::Sequential<float> make_mlp(std::size_t hidden) {
    sft::Rng rng(7);
    nn::Sequential<float> m;
    m.add("flat", nn::Flatten<float>());
    m.add("fc1", nn::Linear<float>(64, hidden, true, rng));
    m.add("act1", nn::ReLU<float>());
    m.add("fc2", nn::Linear<float>(hidden, hidden, true, rng));
    m.add("act2", nn::GELU<float>());
    m.add("drop", nn::Dropout<float>(0.25, 3));
    m.add("norm", nn::LayerNorm<float>(hidden));
    m.add("fc3", nn::Linear<float>(hidden, 10, true, rng));
    return m;
}

// Allocations of `steps` training steps (forward, cross-entropy, backward) after two warm-up steps.
long steady_state_allocations(nn::Sequential<float>& model, bool need_input_grad, int steps) {
    const Tensor<float> x = random_float({64, 1, 8, 8}, 11);
    const Tensor<std::int64_t> y = random_targets(64, 10, 12);
    sft::loss::CrossEntropy<float> criterion;
    bool finite = true;
    auto step = [&] {
        const Tensor<float> logits = model.forward(x);
        finite = finite && std::isfinite(criterion.forward(logits, y));
        model.backward(criterion.backward(), need_input_grad);
    };
    step();
    step();
    const long before = allocations.load();
    for (int i = 0; i < steps; ++i) step();
    const long counted = allocations.load() - before;
    CHECK(finite);
    return counted;
}

}  // namespace

TEST_CASE("Buffer reuse: no heap allocation in a steady-state training step", "[nn][allocation]") {
    {
        const long before = allocations.load();
        auto probe = std::make_unique<int>(1);
        REQUIRE(allocations.load() == before + 1);  // the counting operator new is in effect
    }
    const std::size_t threads_before = sft::get_num_threads();
    for (std::size_t threads : {1, 2}) {
        sft::set_num_threads(threads);
        // Warm-up of the pool's threads: the GEMM's per-thread packing buffers (thread_local) grow
        // on a thread's first large task, and which thread runs which task varies from run to run.
        for (int warm = 0; warm < 3; ++warm) {
            nn::Sequential<float> model = make_mlp(1024);
            steady_state_allocations(model, true, 4);
        }
        for (bool need_input_grad : {true, false}) {
            for (bool fusion : {true, false}) {
                nn::Sequential<float> model = make_mlp(1024);
                model.set_fusion(fusion);
                INFO("threads " << threads << ", need_input_grad " << need_input_grad << ", fusion " << fusion);
                CHECK(steady_state_allocations(model, need_input_grad, 4) == 0);
            }
        }
    }
    // Frozen layers below the stop (their saved tensors released by Sequential) and eval mode.
    nn::Sequential<float> model = make_mlp(256);
    model.freeze("fc1");
    model.freeze("fc2");
    CHECK(steady_state_allocations(model, false, 3) == 0);
    model.eval();
    const Tensor<float> x = random_float({64, 1, 8, 8}, 13);
    model.forward(x);
    model.forward(x);
    const long before = allocations.load();
    for (int i = 0; i < 3; ++i) model.forward(x);
    CHECK(allocations.load() - before == 0);
    sft::set_num_threads(threads_before);
}

TEST_CASE("Buffer reuse: outputs are reused once released, a kept output is never overwritten", "[nn][allocation]") {
    const Tensor<float> x1 = random_float({4, 6}, 1), x2 = random_float({4, 6}, 2), g = random_float({4, 6}, 3);
    std::vector<std::unique_ptr<nn::Module<float>>> layers;
    layers.push_back(std::make_unique<nn::Linear<float>>(6, 6));
    layers.push_back(std::make_unique<nn::ReLU<float>>());
    layers.push_back(std::make_unique<nn::GELU<float>>());
    layers.push_back(std::make_unique<nn::Tanh<float>>());
    layers.push_back(std::make_unique<nn::Sigmoid<float>>());
    layers.push_back(std::make_unique<nn::Dropout<float>>(0.5, 1));
    layers.push_back(std::make_unique<nn::LayerNorm<float>>(6));
    for (auto& layer : layers) {
        INFO(layer->type_name());
        // Released by the caller and by backward: the next forward writes into the same storage,
        // and so does the next backward.
        Tensor<float> y = layer->forward(x1);
        const float* y_storage = y.data();
        Tensor<float> dx = layer->backward(g);
        const float* dx_storage = dx.data();
        y = Tensor<float>();
        dx = Tensor<float>();
        y = layer->forward(x2);
        CHECK(y.data() == y_storage);
        dx = layer->backward(g);
        CHECK(dx.data() == dx_storage);

        // Kept by the caller: the next forward and backward write elsewhere, the kept values stay.
        const Tensor<float> y_copy = y.clone(), dx_copy = dx.clone();
        const Tensor<float> y2 = layer->forward(x1);
        CHECK(y2.data() != y.data());
        const Tensor<float> dx2 = layer->backward(g);
        CHECK(dx2.data() != dx.data());
        CHECK(same_bits(y, y_copy));
        CHECK(same_bits(dx, dx_copy));
    }
}

TEST_CASE("Buffer reuse: backward releases what forward saved, a second backward throws naming the layer", "[nn][allocation]") {
    nn::Sequential<float> model;
    model.add("fc1", nn::Linear<float>(5, 4));
    model.add("act1", nn::ReLU<float>());
    model.add("fc2", nn::Linear<float>(4, 4));
    model.add("gelu", nn::GELU<float>());
    model.add("drop", nn::Dropout<float>(0.5, 1));
    model.add("norm", nn::LayerNorm<float>(4));
    model.add("flat", nn::Flatten<float>());
    const Tensor<float> x = random_float({3, 5}, 4), g = random_float({3, 4}, 5);
    for (const char* child : {"fc1", "act1", "fc2", "gelu", "drop", "norm", "flat"}) {
        INFO(child);
        model.forward(x);
        model.backward(g);
        nn::Module<float>& m = model.at(child);
        const Tensor<float> gc = Tensor<float>::zeros({3, 4});  // every child's output is [3, 4]
        CHECK_THROWS_WITH(m.backward(gc), Catch::Contains(m.label()) && Catch::Contains("before forward"));
    }
    // The whole model: the top child (flat) throws, naming itself.
    model.forward(x);
    model.backward(g);
    CHECK_THROWS_WITH(model.backward(g), Catch::Contains("Flatten 'flat'") && Catch::Contains("before forward"));
    // The fused pair too: the ReLU's error, as without fusion.
    CHECK_THROWS_WITH(model.at("act1").backward(Tensor<float>::zeros({3, 4})), Catch::Contains("ReLU 'act1'") && Catch::Contains("before forward"));
}

TEST_CASE("Buffer reuse: losses reuse their gradient when the caller released it", "[loss][allocation]") {
    const Tensor<float> logits = random_float({8, 5}, 6);
    const Tensor<std::int64_t> y = random_targets(8, 5, 7);
    sft::loss::CrossEntropy<float> ce;
    ce.forward(logits, y);
    Tensor<float> g = ce.backward();
    const float* storage = g.data();
    const Tensor<float> kept = g.clone();
    ce.forward(random_float({8, 5}, 8), y);  // the caller still holds g: a fresh gradient
    CHECK(ce.backward().data() != storage);
    CHECK(same_bits(g, kept));
    g = Tensor<float>();
    ce.forward(logits, y);  // released twice over: the storage of the second gradient is reused
    const float* second = ce.backward().data();
    ce.forward(logits, y);
    CHECK(ce.backward().data() == second);

    sft::loss::MSE<float> mse;
    const Tensor<float> target = random_float({8, 5}, 9);
    mse.forward(logits, target);
    const float* m1 = mse.backward().data();
    mse.forward(logits, target);
    CHECK(mse.backward().data() == m1);
}

namespace {
using Fixture = std::map<std::string, Tensor<float>>;
const Tensor<float>& fixture_at(const std::string& key) {
    static const Fixture f = sft::io::load_safetensors<float>(std::string(SFT_REFERENCE_DIR) + "/activations.safetensors");
    auto it = f.find(key);
    if (it == f.end()) FAIL("activations.safetensors has no tensor '" << key << "'");
    return it->second;
}

// A model whose Linear + ReLU pairs fuse: 13 -> 7 -> ReLU -> 9 -> ReLU -> 3 (with a frozen bias
// variant), weights from one seed so that two instances are equal.
nn::Sequential<float> make_pairs(bool fc1_bias) {
    sft::Rng rng(21);
    nn::Sequential<float> m;
    m.add("fc1", nn::Linear<float>(13, 7, fc1_bias, rng));
    m.add("act1", nn::ReLU<float>());
    m.add("fc2", nn::Linear<float>(7, 9, true, rng));
    m.add("act2", nn::ReLU<float>());
    m.add("fc3", nn::Linear<float>(9, 3, true, rng));
    return m;
}
}  // namespace

TEST_CASE("Fusion: Linear + ReLU fused and unfused give bit-identical outputs and gradients", "[nn][fusion]") {
    for (const Shape shape : {Shape{5, 13}, Shape{2, 3, 13}, Shape{300, 13}}) {
        for (bool fc1_bias : {true, false}) {
            for (bool need_input_grad : {true, false}) {
                INFO("input " << shape.str() << ", fc1 bias " << fc1_bias << ", need_input_grad " << need_input_grad);
                nn::Sequential<float> fused = make_pairs(fc1_bias), plain = make_pairs(fc1_bias);
                plain.set_fusion(false);
                REQUIRE(fused.fusion());
                if (!need_input_grad) {  // a frozen first layer: the stop is at fc2 and act1 is skipped
                    fused.freeze("fc1");
                    plain.freeze("fc1");
                }
                const Tensor<float> x = random_float(shape, 22);
                Shape out_shape = shape;
                out_shape[shape.rank() - 1] = 3;
                const Tensor<float> g = random_float(out_shape, 23);
                for (int step = 0; step < 2; ++step) {
                    const Tensor<float> yf = fused.forward(x), yp = plain.forward(x);
                    CHECK(same_bits(yf, yp));
                    const Tensor<float> dxf = fused.backward(g, need_input_grad), dxp = plain.backward(g, need_input_grad);
                    CHECK(dxf.defined() == need_input_grad);
                    if (need_input_grad) CHECK(same_bits(dxf, dxp));
                    const auto pf = fused.parameters(), pp = plain.parameters();
                    REQUIRE(pf.size() == pp.size());
                    for (std::size_t i = 0; i < pf.size(); ++i) {
                        INFO(pf[i]->name());
                        CHECK(same_bits(pf[i]->grad(), pp[i]->grad()));
                    }
                }
                // The children are unchanged by fusion: names, state_dict, the ReLU's cache.
                CHECK(fused.state_dict().size() == plain.state_dict().size());
                CHECK(fused.at("act1").label() == "ReLU 'act1'");
            }
        }
    }
}

TEST_CASE("Fusion: the fused Linear + ReLU matches PyTorch's Linear then ReLU (float32 fixtures)", "[nn][fusion][reference]") {
    for (const std::string c : {"linear", "linear3"}) {
        nn::Sequential<float> model;
        model.add("fc", nn::Linear<float>(13, 7));
        model.add("act", nn::ReLU<float>());
        model.load_state_dict({{"fc.weight", fixture_at(c + ".weight")}, {"fc.bias", fixture_at(c + ".bias")}});
        const Tensor<float> y = model.forward(fixture_at(c + ".x"));
        const Tensor<float>& want = fixture_at(c + ".y");  // torch.nn.Linear's output; ReLU is exact
        REQUIRE(y.shape() == want.shape());
        std::size_t positive = 0;
        for (std::size_t i = 0; i < y.numel(); ++i) {
            const float w = std::max(want[i], 0.0f);
            CHECK(std::abs(y[i] - w) <= 2e-6f + 1e-5f * std::abs(w));
            positive += want[i] > 0;
        }
        CHECK(positive > 0);
        CHECK(positive < y.numel());  // both sides of the kink are exercised
        // Backward with dy = gy where y > 0: the Linear's gradients of PyTorch, whose fixture used
        // dy = gy everywhere, agree where the ReLU passes everything, so check the pair against the
        // unfused Linear given the masked gradient, and the Linear against PyTorch in linear_test.
        const Tensor<float>& gy = fixture_at(c + ".gy");
        const Tensor<float> dx = model.backward(gy);
        nn::Linear<float> alone(13, 7);
        alone.load_state_dict({{"weight", fixture_at(c + ".weight")}, {"bias", fixture_at(c + ".bias")}});
        alone.forward(fixture_at(c + ".x"));
        Tensor<float> masked = gy.clone();
        for (std::size_t i = 0; i < masked.numel(); ++i)
            if (!(y[i] > 0)) masked[i] = 0;
        const Tensor<float> dx_alone = alone.backward(masked);
        CHECK(same_bits(dx, dx_alone));
        auto* fc = dynamic_cast<nn::Linear<float>*>(&model.at("fc"));
        REQUIRE(fc);
        CHECK(same_bits(fc->weight().grad(), alone.weight().grad()));
        CHECK(same_bits(fc->bias()->grad(), alone.bias()->grad()));
    }
}
