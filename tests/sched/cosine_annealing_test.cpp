// CosineAnnealingLR (closed form against torch's recursive one) and CosineAnnealingWarmRestarts
// against torch 1.13 (tests/reference/ref_sched.py).
#include "sched_support.hpp"

#include <sft/sched/cosine_annealing.hpp>

#include <catch2/catch.hpp>

using namespace sched_test;
using sft::sched::CosineAnnealingLR;
using sft::sched::CosineAnnealingWarmRestarts;

TEST_CASE("CosineAnnealingLR's closed form matches torch's recursive form", "[sched][cosine_annealing]") {
    // torch's step() uses the recursive form; these runs go past T_max, where the cosine rises again.
    check_configs({
        {"cosine_50", factory<CosineAnnealingLR>(50)},
        {"cosine_30_eta", factory<CosineAnnealingLR>(30, 1e-3)},
        {"cosine_100", factory<CosineAnnealingLR>(100)},
        {"cosine_1", factory<CosineAnnealingLR>(1)},
    });
}

TEST_CASE("CosineAnnealingWarmRestarts matches torch and resumes exactly", "[sched][cosine_annealing]") {
    check_configs({
        {"restarts_10", factory<CosineAnnealingWarmRestarts>(10)},
        {"restarts_5_mult2_eta", factory<CosineAnnealingWarmRestarts>(5, 2, 1e-4)},
        {"restarts_1_mult3", factory<CosineAnnealingWarmRestarts>(1, 3)},
    });
}

TEST_CASE("CosineAnnealingWarmRestarts restarts at T_0, T_0 (1 + T_mult), ...", "[sched][cosine_annealing]") {
    FakeOptimizer opt({1.0, 0.5});
    CosineAnnealingWarmRestarts s(opt, 3, 2, 0.1);
    std::vector<std::int64_t> restarts;
    for (int t = 1; t <= 25; ++t) {
        s.step();
        if (s.T_cur() == 0) {
            restarts.push_back(t);
            CHECK(opt.lrs() == std::vector<double>{1.0, 0.5});
        }
    }
    CHECK(restarts == std::vector<std::int64_t>{3, 9, 21});
    CHECK(s.T_i() == 24);
}

TEST_CASE("CosineAnnealingLR reaches eta_min at T_max", "[sched][cosine_annealing]") {
    FakeOptimizer opt({0.1, 0.02});
    CosineAnnealingLR s(opt, 8, 1e-3);
    for (int t = 0; t < 8; ++t) s.step();
    CHECK(opt.group_lr(0) == Approx(1e-3).epsilon(1e-14));
    CHECK(opt.group_lr(1) == Approx(1e-3).epsilon(1e-14));
}

TEST_CASE("Cosine schedulers reject invalid arguments", "[sched][cosine_annealing]") {
    FakeOptimizer opt({0.1, 0.01});
    check_throws_with([&] { CosineAnnealingLR(opt, 0); }, "CosineAnnealingLR: T_max 0 must be >= 1");
    check_throws_with([&] { CosineAnnealingLR(opt, 10, -1e-3); }, "CosineAnnealingLR: eta_min -0.001");
    check_throws_with([&] { CosineAnnealingWarmRestarts(opt, 0); }, "CosineAnnealingWarmRestarts: T_0 0 must be >= 1");
    check_throws_with([&] { CosineAnnealingWarmRestarts(opt, 5, 0); }, "CosineAnnealingWarmRestarts: T_mult 0 must be >= 1");
    check_throws_with([&] { CosineAnnealingWarmRestarts(opt, 5, 1, std::nan("")); }, "CosineAnnealingWarmRestarts: eta_min nan");
}
