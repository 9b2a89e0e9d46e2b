// The optimizers' threaded passes (optim/detail/flat_pass.hpp): step() over all parameters as one
// flat array cut into chunks, zero_grad(), and clip_grad_norm_'s reduction and scaling. Checked:
// every element is covered exactly once (the flat pass against a brute-force map, and step()
// against the kernels called once per whole tensor, to the bit), and 1 and 2 threads give
// bit-identical parameters, states, norms and gradients.
#include <sft/kernels/adamw.hpp>
#include <sft/optim/adam.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/optim/detail/flat_pass.hpp>
#include <sft/optim/sgd.hpp>
#include <sft/parallel.hpp>
#include <sft/train/clip_grad.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using sft::Tensor;
using sft::nn::Parameter;

namespace {

// Restores the thread count a test case changed.
struct ThreadsGuard {
    std::size_t saved = sft::get_num_threads();
    ~ThreadsGuard() { sft::set_num_threads(saved); }
};

struct Item {
    std::size_t offset = 0;
    std::size_t size = 0;
    std::size_t index = 0;
};

// Sizes around the chunk size (16384), empty ones, ones and an odd large one; "frozen" (index 3)
// is frozen until step 3, so that parameters of one group have different step counts.
const std::size_t param_sizes[] = {70000, 37, 1, 5000, 40003, 16, 3};

struct Model {
    std::vector<std::unique_ptr<Parameter<float>>> params;

    explicit Model(std::uint64_t seed) {
        sft::Rng rng(seed);
        for (std::size_t i = 0; i < std::size(param_sizes); ++i) {
            Tensor<float> v({param_sizes[i]});
            for (float& x : v) x = static_cast<float>(rng.uniform(-1, 1));
            params.push_back(std::make_unique<Parameter<float>>("p" + std::to_string(i), v));
        }
        params[3]->requires_grad_(false);
    }
    std::vector<Parameter<float>*> group(std::size_t g) const {
        std::vector<Parameter<float>*> out;
        for (std::size_t i = 0; i < params.size(); ++i)
            if (i % 2 == g) out.push_back(params[i].get());
        return out;
    }
    void set_grads(std::uint64_t seed) {
        sft::Rng rng(seed);
        for (auto& p : params)
            for (float& g : p->grad()) g = static_cast<float>(rng.normal(0.0, 0.5));
    }
};

std::unique_ptr<sft::optim::Optimizer<float>> make(const std::string& name, const Model& m) {
    using namespace sft::optim;
    std::vector<ParamGroup<float>> groups{ParamGroup<float>(m.group(0)), ParamGroup<float>(m.group(1))};
    groups[1].lr(3e-2).weight_decay(0.0);
    if (name == "adamw") return std::make_unique<AdamW<float>>(groups, AdamWOptions(1e-2).weight_decay(0.05));
    if (name == "adamw_amsgrad") return std::make_unique<AdamW<float>>(groups, AdamWOptions(1e-2).betas(0.8, 0.99).amsgrad(true));
    if (name == "adam_l2_amsgrad") return std::make_unique<Adam<float>>(groups, AdamOptions(1e-2).weight_decay(0.1).amsgrad(true));
    if (name == "sgd") return std::make_unique<SGD<float>>(groups, SGDOptions(0.05).weight_decay(0.01));
    return std::make_unique<SGD<float>>(groups, SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.01));
}

const char* const configs[] = {"adamw", "adamw_amsgrad", "adam_l2_amsgrad", "sgd", "sgd_nesterov"};

// The values after 4 steps of `config` at `threads` threads, with the optimizer's state, flat.
std::vector<float> run(const std::string& config, std::size_t threads) {
    sft::set_num_threads(threads);
    Model m(7);
    auto opt = make(config, m);
    for (std::uint64_t t = 1; t <= 4; ++t) {
        if (t == 3) m.params[3]->requires_grad_(true);
        opt->zero_grad();
        m.set_grads(100 + t);
        opt->step();
    }
    std::vector<float> out;
    for (auto& p : m.params) out.insert(out.end(), p->value().begin(), p->value().end());
    auto state = opt->state_dict();
    for (const auto& kv : state) out.insert(out.end(), kv.second.begin(), kv.second.end());
    return out;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("flat_pass covers every element of every item exactly once, in chunks cut by size", "[optim][parallel]") {
    ThreadsGuard guard;
    const std::size_t sizes[] = {0, 5, 0, 16384 * 3 + 7, 1, 0, 20000, 16, 0};
    std::vector<Item> items;
    std::size_t total = 0;
    for (std::size_t i = 0; i < std::size(sizes); ++i) {
        items.push_back({total, sizes[i], i});
        total = sft::optim::detail::round_up(total + sizes[i], 16);
    }
    // for_each_piece on arbitrary ranges against the element-by-element map.
    std::vector<char> in_item(total, 0);
    for (const auto& it : items) std::fill_n(in_item.begin() + static_cast<std::ptrdiff_t>(it.offset), it.size, char(1));
    for (std::size_t b = 0; b < total; b += 2999)
        for (std::size_t e : {b + 1, b + 15, b + 4096, b + 40000, total}) {
            e = std::min(e, total);
            std::vector<int> seen(total, 0), expected(total, 0);
            bool pieces_valid = true;
            sft::optim::detail::for_each_piece(items.data(), items.size(), b, e, [&](const Item& it, std::size_t lo, std::size_t hi) {
                pieces_valid = pieces_valid && lo < hi && hi <= it.size;
                for (std::size_t k = lo; k < hi; ++k) ++seen[it.offset + k];
            });
            for (std::size_t x = b; x < e; ++x) expected[x] = in_item[x];
            const auto wrong = std::mismatch(seen.begin(), seen.end(), expected.begin()).first - seen.begin();
            INFO("range [" << b << ", " << e << "): first element visited wrongly " << wrong);
            REQUIRE(pieces_valid);
            REQUIRE(static_cast<std::size_t>(wrong) == total);
        }
    // The whole pass, at 1 and 2 threads.
    for (std::size_t threads : {1, 2}) {
        sft::set_num_threads(threads);
        std::vector<std::vector<int>> count;
        for (std::size_t s : sizes) count.emplace_back(s, 0);
        sft::optim::detail::flat_pass(items.data(), items.size(), total, 16, [&](const Item& it, std::size_t lo, std::size_t hi) {
            for (std::size_t k = lo; k < hi; ++k) ++count[it.index][k];
        });
        for (std::size_t i = 0; i < count.size(); ++i) REQUIRE(count[i] == std::vector<int>(sizes[i], 1));
    }
    // The cut depends on the total only: at least the grain, at most the chunk limit, aligned.
    const sft::optim::detail::FlatCut small(100, 16384, 256, 16), large(100'000'000, 16384, 256, 16);
    CHECK(small.chunks == 1);
    CHECK(large.chunks <= 256);
    CHECK(large.size % 16 == 0);
    CHECK(large.chunks * large.size >= 100'000'000);
}

TEST_CASE("Optimizer step at 1 and 2 threads: bit-identical, and equal to one kernel call per whole tensor", "[optim][parallel]") {
    ThreadsGuard guard;
    for (const char* config : configs) {
        INFO(config);
        const auto one = run(config, 1), two = run(config, 2);
        CHECK(bit_equal(one, two));
    }
    // AdamW with amsgrad by hand: each whole tensor through the kernel, with its own step count.
    sft::set_num_threads(2);
    Model m(7), r(7);
    auto opt = make("adamw_amsgrad", m);
    std::vector<std::vector<float>> mom, var, vmax;
    std::vector<int> steps(r.params.size(), 0);
    for (auto& p : r.params) {
        mom.emplace_back(p->value().numel(), 0.0f);
        var.emplace_back(p->value().numel(), 0.0f);
        vmax.emplace_back(p->value().numel(), 0.0f);
    }
    for (std::uint64_t t = 1; t <= 4; ++t) {
        if (t == 3) {
            m.params[3]->requires_grad_(true);
            r.params[3]->requires_grad_(true);
        }
        m.set_grads(100 + t);
        r.set_grads(100 + t);
        opt->step();
        for (std::size_t i = 0; i < r.params.size(); ++i) {
            if (!r.params[i]->requires_grad()) continue;
            const double lr = i % 2 == 1 ? 3e-2 : 1e-2, wd = i % 2 == 1 ? 0.0 : 1e-2;
            const auto c = sft::kernels::adam_coefficients<float>(lr, 0.8, 0.99, 1e-8, wd, true, ++steps[i]);
            auto& p = *r.params[i];
            sft::kernels::adam_update(p.value().data(), p.grad().data(), mom[i].data(), var[i].data(), vmax[i].data(), p.value().numel(), c);
        }
    }
    for (std::size_t i = 0; i < r.params.size(); ++i) {
        INFO("parameter " << i);
        const auto& a = m.params[i]->value();
        const auto& b = r.params[i]->value();
        REQUIRE(std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0);
        const auto state = opt->state_dict();
        const auto& s = state.at("p" + std::to_string(i) + ".max_exp_avg_sq");
        REQUIRE(std::memcmp(s.data(), vmax[i].data(), s.numel() * sizeof(float)) == 0);
    }
}

TEST_CASE("Optimizer zero_grad on the pool zeroes every gradient, frozen ones included", "[optim][parallel]") {
    ThreadsGuard guard;
    for (std::size_t threads : {1, 2}) {
        sft::set_num_threads(threads);
        Model m(3);
        auto opt = make("adamw", m);
        m.set_grads(5);
        opt->zero_grad();
        for (auto& p : m.params) REQUIRE(std::all_of(p->grad().begin(), p->grad().end(), [](float g) { return g == 0.0f; }));
    }
}

TEST_CASE("clip_grad_norm_ at 1 and 2 threads: the same norm to the bit, the same scaled gradients", "[optim][parallel][clip]") {
    ThreadsGuard guard;
    std::vector<double> norms;
    std::vector<std::vector<float>> grads;
    for (std::size_t threads : {1, 2}) {
        sft::set_num_threads(threads);
        Model m(11);
        m.set_grads(12);
        // The norm against a long-double sum over the trainable gradients.
        long double sum = 0;
        for (auto& p : m.params)
            if (p->requires_grad())
                for (float g : p->grad()) sum += static_cast<long double>(g) * g;
        std::vector<float> before;
        for (auto& p : m.params) before.insert(before.end(), p->grad().begin(), p->grad().end());
        const auto all = m.group(0), odd = m.group(1);
        std::vector<Parameter<float>*> ps(all);
        ps.insert(ps.end(), odd.begin(), odd.end());
        const double norm = sft::train::grad_norm(ps);
        CHECK(norm == Approx(std::sqrt(static_cast<double>(sum))).epsilon(1e-12));
        norms.push_back(norm);
        const double max_norm = 0.25 * norm;
        CHECK(sft::train::clip_grad_norm_(ps, max_norm) == norm);
        // Trainable gradients times float(coef), the frozen one untouched.
        const float coef = static_cast<float>(max_norm / (norm + 1e-6));
        std::vector<float> after, expected;
        std::size_t at = 0;
        for (auto& p : m.params)
            for (float g : p->grad()) {
                expected.push_back(p->requires_grad() ? before[at] * coef : before[at]);
                after.push_back(g);
                ++at;
            }
        CHECK(bit_equal(after, expected));
        grads.push_back(after);
    }
    CHECK(norms[0] == norms[1]);
    CHECK(bit_equal(grads[0], grads[1]));
}
