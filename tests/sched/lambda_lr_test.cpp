// LambdaLR against torch 1.13 (tests/reference/ref_sched.py).
#include "sched_support.hpp"

#include <sft/sched/lambda_lr.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace sched_test;
using sft::sched::LambdaLR;

TEST_CASE("LambdaLR with one function per group matches torch and resumes exactly", "[sched][lambda_lr]") {
    const std::vector<LambdaLR::Lambda> lambdas{[](std::int64_t t) { return 1.0 / static_cast<double>(1 + t); },
                                                [](std::int64_t t) { return std::pow(0.97, static_cast<double>(t)); }};
    check_configs({{"lambda_per_group", factory<LambdaLR>(lambdas)}});
}

TEST_CASE("LambdaLR applies lambda(0) at construction", "[sched][lambda_lr]") {
    FakeOptimizer opt({0.1, 0.02});
    LambdaLR s(opt, [](std::int64_t t) { return 0.5 + static_cast<double>(t); });
    CHECK(opt.lrs() == std::vector<double>{0.05, 0.01});
    s.step();
    CHECK(opt.lrs() == std::vector<double>{0.1 * 1.5, 0.02 * 1.5});
}

TEST_CASE("LambdaLR rejects a wrong number of functions or an empty one", "[sched][lambda_lr]") {
    FakeOptimizer opt({0.1, 0.02});
    check_throws_with([&] { LambdaLR(opt, std::vector<LambdaLR::Lambda>{[](std::int64_t) { return 1.0; }}); },
                      "LambdaLR: 1 lr_lambdas for 2 parameter groups");
    check_throws_with([&] { LambdaLR(opt, LambdaLR::Lambda{}); }, "LambdaLR: lr_lambda 0 is empty");
}
