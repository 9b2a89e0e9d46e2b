// Shared by the tests of tests/sched: a fake optimizer (the schedulers only see OptimizerBase), the
// PyTorch fixture tests/reference/sched_lr.safetensors (made by ref_sched.py) and two checks run on
// every configuration of it: parity with torch's lr sequence, and bit-exact resume from a state_dict.
#pragma once

#include <sft/io/safetensors.hpp>
#include <sft/optim/optimizer_base.hpp>
#include <sft/sched/scheduler.hpp>
#include <sft/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sched_test {

/// An optimizer with parameter groups and nothing to update: what a scheduler sees.
class FakeOptimizer : public sft::optim::OptimizerBase {
public:
    explicit FakeOptimizer(std::vector<double> initial_lrs) : lr_(initial_lrs), initial_(std::move(initial_lrs)) {}

    std::size_t num_param_groups() const noexcept override { return lr_.size(); }
    double group_lr(std::size_t i) const noexcept override { return lr_[i]; }
    void set_group_lr(std::size_t i, double lr) noexcept override { lr_[i] = lr; }
    double group_initial_lr(std::size_t i) const noexcept override { return initial_[i]; }
    void zero_grad() noexcept override {}
    void step() override { ++steps_; }
    std::size_t steps_taken() const noexcept override { return steps_; }

    std::vector<double> lrs() const { return lr_; }

private:
    std::vector<double> lr_;
    std::vector<double> initial_;
    std::size_t steps_ = 0;
};

using Factory = std::function<std::shared_ptr<sft::sched::Scheduler>(sft::optim::OptimizerBase&)>;

/// The fixture file, loaded once.
inline const std::map<std::string, sft::Tensor<double>>& fixture() {
    static const auto tensors = sft::io::load_safetensors<double>(SFT_REFERENCE_DIR "/sched_lr.safetensors");
    return tensors;
}

inline const sft::Tensor<double>& fixture_tensor(const std::string& key) {
    auto it = fixture().find(key);
    if (it == fixture().end()) FAIL("sched_lr.safetensors has no '" << key << "': rerun tests/reference/ref_sched.py");
    return it->second;
}

/// The two groups' initial lrs every configuration of the fixture starts from.
inline std::vector<double> initial_lrs() {
    const auto& t = fixture_tensor("initial_lr");
    return {t.begin(), t.end()};
}

inline bool has_metric(const std::string& name) { return fixture().count(name + ".metric") != 0; }

/// One step as the fixture took it: with the recorded metric for a plateau configuration.
inline void step(sft::sched::Scheduler& s, const std::string& name, std::size_t t) {
    if (has_metric(name))
        s.step(fixture_tensor(name + ".metric")[t]);
    else
        s.step();
}

/// |a - b| / |b| (0 when both are 0; 1 when only b is 0 and a is not).
inline double rel_error(double a, double b) {
    if (a == b) return 0.0;
    if (b == 0.0) return 1.0;
    return std::fabs(a - b) / std::fabs(b);
}

/// Replays configuration `name` and returns the largest relative error of the lrs (both groups,
/// every step including the one after construction) against torch's; checks it is <= tol and that
/// get_last_lr() agrees with the optimizer. Prints the figure when SFT_SCHED_REPORT is set.
inline double check_parity(const std::string& name, const Factory& make, double tol = 1e-12) {
    const auto& ref = fixture_tensor(name + ".lr");
    const std::size_t rows = ref.size(0), groups = ref.size(1);
    FakeOptimizer opt(initial_lrs());
    REQUIRE(groups == opt.num_param_groups());
    auto sched = make(opt);
    double worst = 0.0;
    std::size_t worst_t = 0;
    for (std::size_t t = 0; t < rows; ++t) {
        if (t > 0) {
            opt.step();
            step(*sched, name, t - 1);
        }
        CHECK(sched->last_epoch() == static_cast<std::int64_t>(t));
        for (std::size_t g = 0; g < groups; ++g) {
            const double e = rel_error(opt.group_lr(g), ref(t, g));
            if (e > worst) {
                worst = e;
                worst_t = t;
            }
            CHECK(sched->get_last_lr()[g] == opt.group_lr(g));
        }
    }
    INFO(name << ": max relative error " << worst << " at step " << worst_t);
    CHECK(worst <= tol);
    if (std::getenv("SFT_SCHED_REPORT")) std::printf("parity %-34s max rel err %.3e (step %zu)\n", name.c_str(), worst, worst_t);
    return worst;
}

/// Runs `name` uninterrupted, and again with a stop at step `split`: state_dict() written to a
/// safetensors file, read back, loaded into a freshly built scheduler on a fresh optimizer, then
/// continued. Every lr of the continuation must equal the uninterrupted run's bit for bit.
inline void check_resume(const std::string& name, const Factory& make, std::size_t split) {
    const std::size_t rows = fixture_tensor(name + ".lr").size(0);
    REQUIRE(split < rows);

    FakeOptimizer full_opt(initial_lrs());
    auto full = make(full_opt);
    std::vector<std::vector<double>> expected{full_opt.lrs()};
    for (std::size_t t = 1; t < rows; ++t) {
        step(*full, name, t - 1);
        expected.push_back(full_opt.lrs());
    }

    FakeOptimizer first_opt(initial_lrs());
    auto first = make(first_opt);
    for (std::size_t t = 1; t <= split; ++t) step(*first, name, t - 1);
    const std::string path = "sched_resume_" + name + ".safetensors";
    sft::io::save_safetensors(first->state_dict(), path);
    const auto saved = sft::io::load_safetensors<double>(path);
    std::remove(path.c_str());

    FakeOptimizer opt(initial_lrs());
    auto resumed = make(opt);
    resumed->load_state_dict(saved);
    INFO(name << " resumed at step " << split);
    CHECK(resumed->last_epoch() == static_cast<std::int64_t>(split));
    CHECK(opt.lrs() == expected[split]);
    CHECK(resumed->get_last_lr() == expected[split]);
    for (std::size_t t = split + 1; t < rows; ++t) {
        step(*resumed, name, t - 1);
        INFO("step " << t);
        REQUIRE(opt.lrs() == expected[t]);
    }
}

/// A named configuration of the fixture and how to build it.
struct Config {
    std::string name;
    Factory make;
};

/// Parity and resume (at a third and at two thirds of the run) for every configuration.
inline void check_configs(const std::vector<Config>& configs) {
    for (const Config& c : configs) {
        SECTION(c.name) {
            check_parity(c.name, c.make);
            const std::size_t rows = fixture_tensor(c.name + ".lr").size(0);
            check_resume(c.name, c.make, rows / 3);
            check_resume(c.name, c.make, 2 * rows / 3);
        }
    }
}

template <class S, class... A>
Factory factory(A... args) {
    return [=](sft::optim::OptimizerBase& opt) { return std::make_shared<S>(opt, args...); };
}

/// Checks that `f` throws sft::Error whose message contains `needle`.
template <class F>
void check_throws_with(F&& f, const std::string& needle) {
    try {
        f();
        FAIL("expected sft::Error containing \"" << needle << "\"");
    } catch (const sft::Error& e) {
        INFO("message: " << e.what());
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}

}  // namespace sched_test
