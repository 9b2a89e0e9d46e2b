#include <sft/nn/activation.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>

#include <catch2/catch.hpp>

#include <algorithm>

using sft::Tensor;
using sft::nn::Linear;
using sft::nn::ReLU;
using sft::nn::Sequential;

namespace {
// A Linear that counts its backward calls and whether it was asked for the input gradient.
template <class T>
class CountingLinear : public Linear<T> {
public:
    using Linear<T>::Linear;
    int backward_calls = 0;
    int input_grads = 0;
    Tensor<T> backward(const Tensor<T>& g, bool need_input_grad = true) override {
        ++backward_calls;
        if (need_input_grad) ++input_grads;
        return Linear<T>::backward(g, need_input_grad);
    }
};

Sequential<float> backbone_model() {
    Sequential<float> backbone;
    backbone.add("fc1", Linear<float>(4, 5));
    backbone.add("act1", ReLU<float>());
    Sequential<float> model;
    model.add("backbone", std::move(backbone));
    model.add("head", Linear<float>(5, 3));
    return model;
}

std::vector<std::string> names(Sequential<float>& m) {
    std::vector<std::string> out;
    for (auto* p : m.parameters()) out.push_back(p->name());
    return out;
}
}  // namespace

TEST_CASE("Sequential: nested children give dotted names as PyTorch", "[nn][sequential]") {
    auto model = backbone_model();
    CHECK(names(model) == std::vector<std::string>{"backbone.fc1.weight", "backbone.fc1.bias", "head.weight", "head.bias"});
    CHECK(model.at("backbone").name() == "backbone");
    auto sd = model.state_dict();
    CHECK(sd.size() == 4);
    CHECK(sd.at("backbone.fc1.weight").shape() == sft::Shape{5, 4});
    CHECK_THROWS_WITH(model.add("head", ReLU<float>()), Catch::Contains("already named 'head'"));
    CHECK_THROWS_WITH(model.add("a.b", ReLU<float>()), Catch::Contains("'a.b'"));
    CHECK_THROWS_WITH(model.at("nope"), Catch::Contains("'nope'"));
}

TEST_CASE("Sequential: forward chains children, errors name the layer", "[nn][sequential]") {
    auto model = backbone_model();
    Tensor<float> x({2, 4}, 1.0f);
    Tensor<float> y = model.forward(x);
    CHECK(y.shape() == sft::Shape{2, 3});
    Tensor<float> bad({2, 7});
    CHECK_THROWS_WITH(model.forward(bad), Catch::Contains("Linear 'backbone.fc1'") && Catch::Contains("[2, 7]") && Catch::Contains("[*, 4]"));
    Sequential<float> fresh = backbone_model();
    CHECK_THROWS_WITH(fresh.backward(Tensor<float>({2, 3})), Catch::Contains("before forward"));
}

TEST_CASE("load_state_dict: strict errors name key and shapes, nothing changes on failure", "[nn][state_dict]") {
    auto model = backbone_model();
    auto other = backbone_model();
    std::map<std::string, Tensor<float>> sd;
    for (auto& [k, v] : other.state_dict()) sd.emplace(k, v.clone());
    const float before = model.state_dict().at("head.weight")[0];

    auto missing = sd;
    missing.erase("head.bias");
    CHECK_THROWS_WITH(model.load_state_dict(missing), Catch::Contains("missing") && Catch::Contains("'head.bias' [3]"));
    auto unexpected = sd;
    unexpected.emplace("head.extra", Tensor<float>({2}));
    CHECK_THROWS_WITH(model.load_state_dict(unexpected), Catch::Contains("unexpected") && Catch::Contains("'head.extra' [2]"));
    auto wrong = sd;
    wrong["head.weight"] = Tensor<float>({3, 6});
    CHECK_THROWS_WITH(model.load_state_dict(wrong), Catch::Contains("'head.weight'") && Catch::Contains("[3, 6]") && Catch::Contains("[3, 5]"));
    CHECK(model.state_dict().at("head.weight")[0] == before);

    sft::nn::LoadResult r = model.load_state_dict(missing, /*strict=*/false);
    CHECK(r.missing_keys == std::vector<std::string>{"head.bias"});
    CHECK(r.unexpected_keys.empty());
    CHECK(model.state_dict().at("head.weight")[0] == sd.at("head.weight")[0]);
    r = model.load_state_dict(unexpected, false);
    CHECK(r.unexpected_keys == std::vector<std::string>{"head.extra"});

    model.load_state_dict(sd);
    for (auto& [k, v] : model.state_dict())
        CHECK(std::equal(v.begin(), v.end(), sd.at(k).begin()));
}

TEST_CASE("freeze/unfreeze by prefix, unknown prefix throws", "[nn][freeze]") {
    auto model = backbone_model();
    model.freeze("backbone");
    for (auto* p : model.parameters()) CHECK(p->requires_grad() == (p->name().rfind("head", 0) == 0));
    model.unfreeze("backbone.fc1.bias");
    CHECK(model.parameters()[1]->requires_grad());
    CHECK_THROWS_WITH(model.freeze("backbone.fc"), Catch::Contains("backbone.fc") && Catch::Contains("backbone.fc1.weight"));
    CHECK_THROWS_WITH(model.unfreeze("nothing"), Catch::Contains("nothing"));
    model.freeze();
    CHECK_FALSE(model.has_trainable());
}

TEST_CASE("backward: frozen parameters get no gradient, it stops below the lowest trainable layer", "[nn][freeze]") {
    Sequential<double> model;
    model.add("fc1", CountingLinear<double>(6, 8));
    model.add("act1", ReLU<double>());
    model.add("fc2", CountingLinear<double>(8, 8));
    model.add("act2", ReLU<double>());
    model.add("fc3", CountingLinear<double>(8, 2));
    auto& fc1 = static_cast<CountingLinear<double>&>(model.at("fc1"));
    auto& fc2 = static_cast<CountingLinear<double>&>(model.at("fc2"));
    auto& fc3 = static_cast<CountingLinear<double>&>(model.at("fc3"));
    sft::Rng rng(3);
    Tensor<double> x({4, 6});
    for (auto& v : x) v = rng.normal();
    Tensor<double> g({4, 2}, 1.0);

    model.freeze("fc1");
    model.forward(x);
    model.backward(g, /*need_input_grad=*/false);
    CHECK(fc1.backward_calls == 0);  // below the lowest trainable layer: skipped
    CHECK(fc2.backward_calls == 1);
    CHECK(fc2.input_grads == 0);  // the lowest trainable layer computes no input gradient
    CHECK(fc3.input_grads == 1);
    for (double v : fc1.weight().grad()) CHECK(v == 0.0);
    double sum = 0;
    for (double v : fc2.weight().grad()) sum += std::abs(v);
    CHECK(sum > 0);

    // Head only: fc2 frozen too, its weight gradient stays zero but fc3 still trains.
    model.freeze("fc2");
    for (auto* p : model.parameters()) p->grad().zero_();
    model.forward(x);
    model.backward(g, false);
    CHECK(fc2.backward_calls == 1);
    CHECK(fc3.backward_calls == 2);
    CHECK(fc3.input_grads == 1);
    for (double v : fc2.weight().grad()) CHECK(v == 0.0);

    // Asked for the input gradient (the default), every layer runs and the input gradient is right.
    // (backward released what forward saved: a second backward needs a new forward.)
    model.unfreeze();
    CHECK_THROWS_WITH(model.backward(g), Catch::Contains("Linear 'fc3'") && Catch::Contains("before forward"));
    model.forward(x);
    Tensor<double> gx = model.backward(g);
    CHECK(fc1.backward_calls == 1);
    CHECK(gx.shape() == x.shape());
}
