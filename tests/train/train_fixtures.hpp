// Small synthetic problems and models for the Trainer tests.
#pragma once

#include <sft/data/dataset.hpp>
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/tensor.hpp>
#include <sft/train/callback.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace sft_test {

/// `n` samples of `classes` Gaussian blobs in `dim` dimensions: class c is centred on
/// `separation` times the unit vector e_{c mod dim}; labels cycle 0, 1, ..., classes-1.
template <class T>
sft::data::TensorDataset<T> blobs(std::size_t n, std::size_t dim, std::size_t classes, std::uint64_t seed, double separation = 3.0) {
    sft::Rng rng(seed);
    sft::Tensor<T> x({n, dim});
    sft::Tensor<std::int64_t> y({n});
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t c = i % classes;
        y[i] = static_cast<std::int64_t>(c);
        for (std::size_t j = 0; j < dim; ++j) x(i, j) = static_cast<T>(rng.normal() + (j == c % dim ? separation : 0.0));
    }
    return {x, y};
}

/// An MLP dim -> hidden -> classes, initialised from `seed`.
template <class T>
sft::nn::Sequential<T> mlp(std::size_t dim, std::size_t hidden, std::size_t classes, std::uint64_t seed) {
    sft::Rng rng(seed);
    sft::nn::Sequential<T> m;
    m.add("fc1", sft::nn::Linear<T>(dim, hidden, true, rng));
    m.add("act1", sft::nn::ReLU<T>());
    m.add("fc2", sft::nn::Linear<T>(hidden, classes, true, rng));
    return m;
}

/// Deep copies of a model's parameters and buffers.
template <class T>
std::map<std::string, sft::Tensor<T>> weights(sft::nn::Module<T>& m) {
    std::map<std::string, sft::Tensor<T>> out;
    for (const auto& [k, v] : m.state_dict()) out.emplace(k, v.clone());
    return out;
}

/// Largest |a - b| over two state dicts with the same keys.
template <class T>
double max_abs_diff(const std::map<std::string, sft::Tensor<T>>& a, const std::map<std::string, sft::Tensor<T>>& b) {
    double d = 0;
    for (const auto& [k, t] : a) {
        const auto& u = b.at(k);
        for (std::size_t i = 0; i < t.numel(); ++i) d = std::max(d, std::abs(static_cast<double>(t[i]) - static_cast<double>(u[i])));
    }
    return d;
}

/// A callback made of lambdas, for tests that watch the hooks.
struct Probe : sft::train::Callback {
    std::function<void(sft::train::TrainState&)> train_begin, train_end, epoch_begin, epoch_end, step_begin, step_end, evaluate;
    void on_train_begin(sft::train::TrainState& s) override { if (train_begin) train_begin(s); }
    void on_train_end(sft::train::TrainState& s) override { if (train_end) train_end(s); }
    void on_epoch_begin(sft::train::TrainState& s) override { if (epoch_begin) epoch_begin(s); }
    void on_epoch_end(sft::train::TrainState& s) override { if (epoch_end) epoch_end(s); }
    void on_step_begin(sft::train::TrainState& s) override { if (step_begin) step_begin(s); }
    void on_step_end(sft::train::TrainState& s) override { if (step_end) step_end(s); }
    void on_evaluate(sft::train::TrainState& s) override { if (evaluate) evaluate(s); }
};

/// CrossEntropy that returns NaN from its `nan_at`-th training forward (counting from 1).
template <class T>
class NanAt : public sft::loss::Loss<T, std::int64_t> {
public:
    explicit NanAt(std::size_t nan_at) : nan_at_(nan_at) {}
    T forward(const sft::Tensor<T>& p, const sft::Tensor<std::int64_t>& y, bool need_grad = true) override {
        const T l = ce_.forward(p, y, need_grad);
        if (need_grad && ++calls_ == nan_at_) return std::numeric_limits<T>::quiet_NaN();
        return l;
    }
    sft::Tensor<T> backward() override { return ce_.backward(); }
    std::string type_name() const override { return "NanAt"; }

private:
    sft::loss::CrossEntropy<T> ce_;
    std::size_t nan_at_;
    std::size_t calls_ = 0;
};

}  // namespace sft_test
