// SequentialLR against torch 1.13 (tests/reference/ref_sched.py), quirks included: the next
// scheduler restarts at its step 0 on the milestone itself (torch's scheduler.step(0)).
#include "sched_support.hpp"

#include <sft/sched/cosine_annealing.hpp>
#include <sft/sched/linear_lr.hpp>
#include <sft/sched/one_cycle.hpp>
#include <sft/sched/sequential_lr.hpp>
#include <sft/sched/step_lr.hpp>
#include <sft/sched/warmup.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using namespace sft::sched;
using Schedulers = std::vector<std::shared_ptr<LRScheduler>>;
using Milestones = std::vector<std::int64_t>;

TEST_CASE("SequentialLR matches torch and resumes exactly", "[sched][sequential_lr]") {
    check_configs({
        {"sequential_linear_cosine",
         [](sft::optim::OptimizerBase& o) {
             return std::make_shared<SequentialLR>(
                 o, Schedulers{std::make_shared<LinearLR>(o, 0.1, 1.0, 5), std::make_shared<CosineAnnealingLR>(o, 45)},
                 Milestones{5});
         }},
        {"sequential_constant_exponential",
         [](sft::optim::OptimizerBase& o) {
             return std::make_shared<SequentialLR>(
                 o, Schedulers{std::make_shared<ConstantLR>(o, 0.1, 2), std::make_shared<ExponentialLR>(o, 0.9)}, Milestones{2});
         }},
        {"sequential_three",
         [](sft::optim::OptimizerBase& o) {
             return std::make_shared<SequentialLR>(
                 o,
                 Schedulers{std::make_shared<ConstantLR>(o, 0.5, 3), std::make_shared<StepLR>(o, 4, 0.5),
                            std::make_shared<CosineAnnealingWarmRestarts>(o, 5, 2)},
                 Milestones{6, 20});
         }},
        {"sequential_warmup_multistep",
         [](sft::optim::OptimizerBase& o) {
             return std::make_shared<SequentialLR>(
                 o, Schedulers{std::make_shared<WarmupLinear>(o, 4, 1000), std::make_shared<MultiStepLR>(o, Milestones{10, 20}, 0.1)},
                 Milestones{4});
         }},
    });
}

TEST_CASE("SequentialLR: the next scheduler's step-0 lr at the milestone (torch's step(0))", "[sched][sequential_lr]") {
    FakeOptimizer opt({1.0});
    auto constant = std::make_shared<ConstantLR>(opt, 0.1, 2);
    auto exponential = std::make_shared<ExponentialLR>(opt, 0.9);
    SequentialLR s(opt, {constant, exponential}, {2});
    CHECK(s.last_epoch() == 0);
    CHECK(opt.lr() == Approx(0.1).epsilon(1e-15));
    s.step();
    CHECK(opt.lr() == Approx(0.1).epsilon(1e-15));
    s.step();
    CHECK(opt.lr() == 1.0);  // not 0.9, whatever torch's docstring says
    CHECK(exponential->last_epoch() == 0);
    s.step();
    CHECK(opt.lr() == Approx(0.9).epsilon(1e-15));
    CHECK(constant->last_epoch() == 1);  // no longer stepped
    CHECK(s.get_last_lr() == exponential->get_last_lr());
}

TEST_CASE("SequentialLR takes the first scheduler's interval", "[sched][sequential_lr]") {
    FakeOptimizer opt({1.0});
    SequentialLR s(opt, {std::make_shared<WarmupLinear>(opt, 3, 30), std::make_shared<StepLR>(opt, 5)}, {3});
    CHECK(s.interval() == Interval::step);
    s.set_interval(Interval::epoch);
    CHECK(s.interval() == Interval::epoch);
}

TEST_CASE("SequentialLR passes on a refused step without counting it", "[sched][sequential_lr]") {
    FakeOptimizer opt({1.0});
    SequentialLR s(opt, {std::make_shared<ConstantLR>(opt, 0.5, 1), std::make_shared<OneCycleLR>(opt, 1.0, 4)}, {2});
    for (int t = 0; t < 6; ++t) s.step();  // OneCycleLR: step 0 at the milestone, then 4 steps
    CHECK_THROWS_AS(s.step(), sft::Error);
    CHECK(s.last_epoch() == 6);
}

TEST_CASE("SequentialLR rejects invalid arguments", "[sched][sequential_lr]") {
    FakeOptimizer opt({0.1, 0.01});
    FakeOptimizer other({0.1, 0.01});
    auto a = std::make_shared<StepLR>(opt, 3);
    auto b = std::make_shared<ExponentialLR>(opt, 0.9);
    check_throws_with([&] { SequentialLR(opt, {}, {}); }, "SequentialLR: no schedulers given");
    check_throws_with([&] { SequentialLR(opt, {a, nullptr}, {3}); }, "SequentialLR: scheduler 1 is null");
    check_throws_with([&] { SequentialLR(opt, {a, std::make_shared<StepLR>(other, 2)}, {3}); },
                      "SequentialLR: scheduler 1 (StepLR) drives another optimizer");
    check_throws_with([&] { SequentialLR(opt, {a, a}, {3}); }, "SequentialLR: schedulers 0 and 1 are the same StepLR");
    check_throws_with([&] { SequentialLR(opt, {a, b}, {}); }, "SequentialLR: 2 schedulers need 1 milestones, 0 given");
    check_throws_with([&] { SequentialLR(opt, {a, b}, {0}); }, "SequentialLR: milestone 0 must be >= 1");
    check_throws_with([&] { SequentialLR(opt, {a, b, std::make_shared<StepLR>(opt, 2)}, {5, 5}); },
                      "SequentialLR: milestones 5 then 5 are not increasing");
}
