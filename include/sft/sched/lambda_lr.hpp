/// @file lambda_lr.hpp
/// sft::sched::LambdaLR: every group's initial lr times a user function of the step, as
/// torch.optim.lr_scheduler.LambdaLR computes it in PyTorch 1.13.
#pragma once

#include <sft/sched/scheduler.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace sft::sched {

/// lr_t = base_lr * lr_lambda(t) for every group (one function for all groups, or one per group).
/// Construction applies lr_lambda(0), as torch does. The functions are not part of state_dict()
/// (torch saves them only when they are callable objects); a restored LambdaLR must be built with
/// the same functions. Default interval: epoch.
class LambdaLR : public LRScheduler {
public:
    /// The factor as a function of the step count t >= 0.
    using Lambda = std::function<double(std::int64_t)>;

    /// One function for every group. Throws sft::Error if it is empty.
    LambdaLR(optim::OptimizerBase& opt, Lambda lr_lambda)
        : LambdaLR(opt, std::vector<Lambda>(opt.num_param_groups(), std::move(lr_lambda))) {}

    /// One function per parameter group. Throws sft::Error if their number differs from the number
    /// of groups or one is empty.
    LambdaLR(optim::OptimizerBase& opt, std::vector<Lambda> lr_lambdas)
        : LRScheduler(opt, "LambdaLR", Interval::epoch), lambdas_(std::move(lr_lambdas)) {
        detail::require(lambdas_.size() == opt.num_param_groups(),
                        fmt::format("LambdaLR: {} lr_lambdas for {} parameter groups", lambdas_.size(), opt.num_param_groups()));
        for (std::size_t i = 0; i < lambdas_.size(); ++i)
            detail::require(static_cast<bool>(lambdas_[i]), fmt::format("LambdaLR: lr_lambda {} is empty", i));
        initial_step();
    }

protected:
    double compute_lr(std::size_t i) const override { return base_lrs_[i] * lambdas_[i](last_epoch_); }

private:
    std::vector<Lambda> lambdas_;
};

}  // namespace sft::sched
