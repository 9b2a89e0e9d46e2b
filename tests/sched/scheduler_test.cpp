// The Scheduler base: state_dict layout and its checks, the step()/step(metric) contract, the
// interval hint, and a real optimizer (AdamW<float>) driven by a scheduler.
#include "sched_support.hpp"

#include <sft/nn/module.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/sched/cosine_annealing.hpp>
#include <sft/sched/reduce_on_plateau.hpp>
#include <sft/sched/sequential_lr.hpp>
#include <sft/sched/step_lr.hpp>
#include <sft/sched/warmup.hpp>

#include <catch2/catch.hpp>

#include <set>

using namespace sched_test;
using namespace sft::sched;
using Dict = std::map<std::string, sft::Tensor<double>>;

namespace {
std::set<std::string> keys(const Dict& d) {
    std::set<std::string> k;
    for (const auto& kv : d) k.insert(kv.first);
    return k;
}
}  // namespace

TEST_CASE("state_dict holds counters, lrs and configuration as float64", "[sched][scheduler]") {
    FakeOptimizer opt({0.1, 0.01});
    StepLR s(opt, 3, 0.5);
    for (int t = 0; t < 4; ++t) s.step();
    const Dict d = s.state_dict();
    CHECK(keys(d) == std::set<std::string>{"base_lrs", "gamma", "last_epoch", "last_lr", "step_size"});
    CHECK(d.at("last_epoch").shape() == sft::Shape{1});
    CHECK(d.at("last_epoch")[0] == 4.0);
    CHECK(d.at("last_lr").shape() == sft::Shape{2});
    CHECK(d.at("last_lr")[0] == 0.05);
    CHECK(d.at("base_lrs")[1] == 0.01);
    CHECK(d.at("step_size")[0] == 3.0);

    FakeOptimizer opt2({0.1, 0.01});
    CosineAnnealingWarmRestarts w(opt2, 4, 2);
    CHECK(keys(w.state_dict()) ==
          std::set<std::string>{"T_0", "T_cur", "T_i", "T_mult", "base_lrs", "eta_min", "last_epoch", "last_lr"});

    FakeOptimizer opt3({0.1, 0.01});
    SequentialLR seq(opt3, {std::make_shared<StepLR>(opt3, 3), std::make_shared<ExponentialLR>(opt3, 0.9)}, {4});
    const auto k = keys(seq.state_dict());
    CHECK(k.count("milestones"));
    CHECK(k.count("schedulers.0.step_size"));
    CHECK(k.count("schedulers.1.gamma"));
    CHECK(k.count("schedulers.1.last_epoch"));
}

TEST_CASE("load_state_dict rejects a foreign state and then changes nothing", "[sched][scheduler]") {
    FakeOptimizer src_opt({0.1, 0.01});
    StepLR src(src_opt, 3, 0.5);
    for (int t = 0; t < 7; ++t) src.step();
    const Dict good = src.state_dict();

    FakeOptimizer opt({0.1, 0.01});
    StepLR s(opt, 3, 0.5);
    s.step();
    const Dict before = s.state_dict();
    auto unchanged = [&] {
        CHECK(s.last_epoch() == 1);
        CHECK(opt.lrs() == std::vector<double>{0.1, 0.01});
        CHECK(s.state_dict().at("last_epoch")[0] == before.at("last_epoch")[0]);
    };

    Dict missing = good;
    missing.erase("last_lr");
    check_throws_with([&] { s.load_state_dict(missing); }, "StepLR: state_dict has no key 'last_lr'");
    unchanged();

    Dict extra = good;
    extra["momentum"] = sft::Tensor<double>({1}, 0.9);
    check_throws_with([&] { s.load_state_dict(extra); }, "StepLR: unexpected key 'momentum' in state_dict");
    unchanged();

    Dict other_gamma = good;
    other_gamma["gamma"] = sft::Tensor<double>({1}, 0.1);
    check_throws_with([&] { s.load_state_dict(other_gamma); }, "StepLR: state_dict 'gamma' was saved with 0.1, this scheduler has 0.5");
    unchanged();

    Dict three_groups = good;
    three_groups["last_lr"] = sft::Tensor<double>({3}, 0.1);
    check_throws_with([&] { s.load_state_dict(three_groups); }, "StepLR: state_dict 'last_lr' has shape [3], expected [2]");
    unchanged();

    Dict fractional = good;
    fractional["last_epoch"] = sft::Tensor<double>({1}, 2.5);
    check_throws_with([&] { s.load_state_dict(fractional); }, "StepLR: state_dict 'last_epoch' is 2.5, expected an integer");
    unchanged();

    FakeOptimizer cos_opt({0.1, 0.01});
    CosineAnnealingLR c(cos_opt, 10);
    CHECK_THROWS_AS(c.load_state_dict(good), sft::Error);  // another type: missing T_max

    s.load_state_dict(good);
    CHECK(s.last_epoch() == 7);
    CHECK(opt.lrs() == src_opt.lrs());  // the restored lrs are written into the optimizer
}

TEST_CASE("SequentialLR's load errors name the inner scheduler", "[sched][scheduler]") {
    FakeOptimizer a({0.1, 0.01});
    SequentialLR sa(a, {std::make_shared<StepLR>(a, 3), std::make_shared<ExponentialLR>(a, 0.9)}, {4});
    FakeOptimizer b({0.1, 0.01});
    SequentialLR sb(b, {std::make_shared<StepLR>(b, 3), std::make_shared<ExponentialLR>(b, 0.8)}, {4});
    check_throws_with([&] { sb.load_state_dict(sa.state_dict()); },
                      "SequentialLR scheduler 1 (ExponentialLR): state_dict 'schedulers.1.gamma' was saved with 0.9, this scheduler has 0.8");
}

TEST_CASE("step() and step(metric) are each for their kind of scheduler", "[sched][scheduler]") {
    FakeOptimizer opt({0.1, 0.01});
    WarmupLinear w(opt, 2, 10);
    Scheduler& base = w;
    CHECK_FALSE(base.needs_metric());
    check_throws_with([&] { base.step(0.5); }, "WarmupLinear: step(0.5) called with a metric, but this scheduler takes none");
    CHECK(base.last_epoch() == 0);

    FakeOptimizer opt2({0.1, 0.01});
    ReduceLROnPlateau p(opt2);
    Scheduler& pb = p;
    CHECK(pb.needs_metric());
    CHECK_THROWS_AS(pb.step(), sft::Error);
    pb.step(0.3);
    CHECK(pb.last_epoch() == 1);
    CHECK(pb.name() == "ReduceLROnPlateau");
    CHECK(&pb.optimizer() == &opt2);
}

TEST_CASE("Interval defaults follow how each schedule is used, and can be overridden", "[sched][scheduler]") {
    FakeOptimizer opt({0.1, 0.01});
    WarmupCosine w(opt, 5, 100);
    CHECK(w.interval() == Interval::step);
    CosineAnnealingLR c(opt, 10);
    CHECK(c.interval() == Interval::epoch);
    c.set_interval(Interval::step);
    CHECK(c.interval() == Interval::step);
}

TEST_CASE("A scheduler drives AdamW<float>'s parameter groups", "[sched][scheduler][adamw]") {
    sft::nn::Parameter<float> w("w", sft::Tensor<float>({4}, 1.0f));
    sft::nn::Parameter<float> b("b", sft::Tensor<float>({2}, -1.0f));
    std::vector<sft::optim::ParamGroup<float>> groups{sft::optim::ParamGroup<float>({&w}).lr(1e-2),
                                                      sft::optim::ParamGroup<float>({&b})};
    sft::optim::AdamW<float> opt(groups, sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::sched::WarmupCosine sched(opt, /*warmup_steps=*/5, /*total_steps=*/100);
    FakeOptimizer fake({1e-2, 1e-3});
    sft::sched::WarmupCosine ref(fake, 5, 100);

    CHECK(opt.lr() == 0.0);  // the step-0 lr, written at construction
    CHECK(opt.group_lr(1) == 0.0);
    for (int step = 0; step < 30; ++step) {
        opt.zero_grad();
        w.grad().fill_(0.5f);
        b.grad().fill_(-0.25f);
        const float w_before = w.value()[0];
        opt.step();
        if (step == 0) CHECK(w.value()[0] == w_before);  // lr 0: no update, no decay
        if (step == 1) CHECK(w.value()[0] < w_before);
        sched.step();
        ref.step();
        REQUIRE(opt.group_lr(0) == fake.group_lr(0));
        REQUIRE(opt.group_lr(1) == fake.group_lr(1));
    }
    CHECK(opt.lr() == sched.get_last_lr()[0]);
    CHECK(sched.last_epoch() == 30);
    CHECK(opt.steps_taken() == 30);
}

TEST_CASE("An empty configuration vector survives a safetensors round trip", "[sched][scheduler]") {
    FakeOptimizer opt({0.1, 0.01});
    MultiStepLR s(opt, {}, 0.5);  // no milestones: a constant lr, and a [0] tensor in the state
    SequentialLR seq(opt, {std::make_shared<ExponentialLR>(opt, 0.9)}, {});
    for (int t = 0; t < 3; ++t) seq.step();
    const std::string path = "sched_empty_milestones.safetensors";
    for (Scheduler* sch : {static_cast<Scheduler*>(&s), static_cast<Scheduler*>(&seq)}) {
        sft::io::save_safetensors(sch->state_dict(), path);
        const auto loaded = sft::io::load_safetensors<double>(path);
        CHECK(loaded.at("milestones").numel() == 0);
        sch->load_state_dict(loaded);
    }
    std::remove(path.c_str());
    CHECK(seq.last_epoch() == 3);
    CHECK(opt.group_lr(0) == Approx(0.1 * 0.9 * 0.9 * 0.9).epsilon(1e-15));
}
