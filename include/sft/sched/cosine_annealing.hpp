/// @file cosine_annealing.hpp
/// Cosine annealing (SGDR, Loshchilov & Hutter 2017) as in PyTorch 1.13: CosineAnnealingLR and
/// CosineAnnealingWarmRestarts.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace sft::sched {

namespace detail {
/// eta_min + (base - eta_min) * (1 + cos(pi * t / period)) / 2, in torch's order of operations.
inline double cosine_anneal(double base, double eta_min, double t, double period) noexcept {
    return eta_min + (base - eta_min) * (1 + std::cos(pi * t / period)) / 2;
}
}  // namespace detail

/// Anneals every group's lr from its initial lr to eta_min along a half cosine over T_max steps
/// (torch.optim.lr_scheduler.CosineAnnealingLR):
///     lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2.
/// This is torch's closed form (_get_closed_form_lr); torch's step() uses a recursive form instead,
/// lr_t = (1 + cos(pi t/T)) / (1 + cos(pi (t-1)/T)) * (lr_{t-1} - eta_min) + eta_min, which is the
/// same function when nothing else writes the lr, and which rounds differently. Measured gap
/// between the two (max relative error over 2 T_max steps): 2e-14 on the fixtures of
/// tests/sched/cosine_annealing_test.cpp (T_max 1 to 100, eta_min 0 and 1e-3), 1.2e-14 for
/// T_max 10^4; it is largest near the trough, where the recursion divides small numbers.
/// Past T_max the cosine rises again
/// (period 2 T_max), as it does in torch. Default interval: epoch.
class CosineAnnealingLR : public LRScheduler {
public:
    /// Throws sft::Error if T_max < 1 or eta_min is negative or not finite.
    CosineAnnealingLR(optim::OptimizerBase& opt, std::int64_t T_max, double eta_min = 0.0)
        : LRScheduler(opt, "CosineAnnealingLR", Interval::epoch), T_max_(T_max), eta_min_(eta_min) {
        detail::require(T_max >= 1, fmt::format("CosineAnnealingLR: T_max {} must be >= 1", T_max));
        detail::require(std::isfinite(eta_min) && eta_min >= 0,
                               fmt::format("CosineAnnealingLR: eta_min {} must be finite and >= 0", eta_min));
        initial_step();
    }

    std::int64_t T_max() const noexcept { return T_max_; }
    double eta_min() const noexcept { return eta_min_; }

protected:
    double compute_lr(std::size_t i) const override {
        return detail::cosine_anneal(base_lrs_[i], eta_min_, static_cast<double>(last_epoch_), static_cast<double>(T_max_));
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("T_max", T_max_);
        ar.config("eta_min", eta_min_);
    }

private:
    std::int64_t T_max_;
    double eta_min_;
};

/// Cosine annealing with warm restarts (torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
///     lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2,
/// where T_cur counts the steps since the last restart and the i-th cycle lasts T_i = T_0 * T_mult^i
/// steps; at T_cur == T_i the lr jumps back to base_lr. Integer steps only (torch also accepts
/// fractional epochs in step(epoch); sft has no such overload). Default interval: epoch.
class CosineAnnealingWarmRestarts : public LRScheduler {
public:
    /// Throws sft::Error if T_0 < 1, T_mult < 1, or eta_min is negative or not finite.
    CosineAnnealingWarmRestarts(optim::OptimizerBase& opt, std::int64_t T_0, std::int64_t T_mult = 1, double eta_min = 0.0)
        : LRScheduler(opt, "CosineAnnealingWarmRestarts", Interval::epoch), T_0_(T_0), T_mult_(T_mult), eta_min_(eta_min) {
        detail::require(T_0 >= 1, fmt::format("CosineAnnealingWarmRestarts: T_0 {} must be >= 1", T_0));
        detail::require(T_mult >= 1, fmt::format("CosineAnnealingWarmRestarts: T_mult {} must be >= 1", T_mult));
        detail::require(std::isfinite(eta_min) && eta_min >= 0,
                               fmt::format("CosineAnnealingWarmRestarts: eta_min {} must be finite and >= 0", eta_min));
        initial_step();
    }

    std::int64_t T_0() const noexcept { return T_0_; }
    std::int64_t T_mult() const noexcept { return T_mult_; }
    double eta_min() const noexcept { return eta_min_; }
    /// Steps since the last restart.
    std::int64_t T_cur() const noexcept { return T_cur_; }
    /// Length of the current cycle.
    std::int64_t T_i() const noexcept { return T_i_; }

protected:
    double compute_lr(std::size_t i) const override {
        return detail::cosine_anneal(base_lrs_[i], eta_min_, static_cast<double>(T_cur_), static_cast<double>(T_i_));
    }
    void advance() override {
        // torch's step(): from last_epoch < 0 it takes the step(0) branch; otherwise T_cur + 1,
        // restarting (and stretching the cycle by T_mult) when it reaches T_i.
        if (last_epoch_ <= 0) {
            last_epoch_ = 0;
            restart();
            return;
        }
        if (++T_cur_ >= T_i_) {
            T_cur_ -= T_i_;
            T_i_ *= T_mult_;
        }
    }
    void restart() override {
        T_cur_ = 0;
        T_i_ = T_0_;
    }
    void visit_state(detail::StateArchive& ar) override {
        LRScheduler::visit_state(ar);
        ar.config("T_0", T_0_);
        ar.config("T_mult", T_mult_);
        ar.config("eta_min", eta_min_);
        ar.state("T_cur", T_cur_);
        ar.state("T_i", T_i_);
    }

private:
    std::int64_t T_0_;
    std::int64_t T_mult_;
    double eta_min_;
    std::int64_t T_cur_ = 0;
    std::int64_t T_i_ = 0;
};

}  // namespace sft::sched
