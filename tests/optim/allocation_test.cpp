// step(), zero_grad() and clip_grad_norm_ allocate nothing after the first step (state is
// allocated once, lazily), at 1 and 2 threads (the threaded passes run on sft's pool): counted by
// replacing the global operator new for this test binary. The replacement only counts, then
// allocates as usual, so the other tests linked into sft_test_optim are unaffected.
#include <sft/optim/adam.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/optim/sgd.hpp>
#include <sft/parallel.hpp>
#include <sft/train/clip_grad.hpp>

#include <catch2/catch.hpp>

#include "support/counting_new.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

using sft_test::allocations;

namespace {
template <class Opt>
long allocations_in_steps(Opt& opt, std::vector<std::unique_ptr<sft::nn::Parameter<float>>>& params) {
    for (auto& p : params) p->grad().fill_(0.5f);
    opt.step();  // the first step allocates the state
    std::vector<sft::nn::Parameter<float>*> ps;
    for (auto& p : params) ps.push_back(p.get());
    const long before = allocations.load();
    for (int i = 0; i < 5; ++i) {
        opt.zero_grad();
        for (auto& p : params) p->grad().fill_(0.25f);
        sft::train::clip_grad_norm_(ps, 1.0);  // the norm is about 61: the gradients are scaled
        opt.step();
    }
    return allocations.load() - before;
}

// A [300, 200] weight (several chunks of the threaded passes) and small ones.
std::vector<std::unique_ptr<sft::nn::Parameter<float>>> make_params() {
    std::vector<std::unique_ptr<sft::nn::Parameter<float>>> ps;
    ps.push_back(std::make_unique<sft::nn::Parameter<float>>("w", sft::Tensor<float>({33, 7}, 1.0f)));
    ps.push_back(std::make_unique<sft::nn::Parameter<float>>("b", sft::Tensor<float>({7}, 1.0f)));
    ps.push_back(std::make_unique<sft::nn::Parameter<float>>("f", sft::Tensor<float>({5}, 1.0f)));
    ps.push_back(std::make_unique<sft::nn::Parameter<float>>("big", sft::Tensor<float>({300, 200}, 1.0f)));
    ps[2]->requires_grad_(false);
    return ps;
}
std::vector<sft::nn::Parameter<float>*> raw(const std::vector<std::unique_ptr<sft::nn::Parameter<float>>>& ps) {
    std::vector<sft::nn::Parameter<float>*> out;
    for (auto& p : ps) out.push_back(p.get());
    return out;
}
}  // namespace

TEST_CASE("Optimizers allocate nothing in step(), zero_grad() or clip_grad_norm_ after the first step", "[optim][allocation]") {
    {
        // The counter sees this allocation: the replacement is in effect.
        const long before = allocations.load();
        auto probe = std::make_unique<int>(1);
        REQUIRE(allocations.load() == before + 1);
    }
    const std::size_t saved = sft::get_num_threads();
    for (std::size_t threads : {1, 2}) {
        INFO(threads << " threads");
        sft::set_num_threads(threads);  // starts the pool's threads (allocates) before the counting
        auto p1 = make_params();
        sft::optim::AdamW<float> adamw(raw(p1), sft::optim::AdamWOptions().amsgrad(true));
        CHECK(allocations_in_steps(adamw, p1) == 0);
        auto p2 = make_params();
        sft::optim::Adam<float> adam(raw(p2), sft::optim::AdamOptions().weight_decay(0.1));
        CHECK(allocations_in_steps(adam, p2) == 0);
        auto p3 = make_params();
        sft::optim::SGD<float> sgd(raw(p3), sft::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
        CHECK(allocations_in_steps(sgd, p3) == 0);
    }
    sft::set_num_threads(saved);
}
