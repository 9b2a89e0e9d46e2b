/// @file optimizer_base.hpp
/// sft::optim::OptimizerBase: the non-template face of every optimizer, what schedulers and the
/// Trainer drive. A scheduler only reads and writes the learning rates of the parameter groups
/// (STYLE.md rule 7: a scheduler maps step to learning rate, the optimizer owns its state).
#pragma once

#include <cstddef>

namespace sft::optim {

/// What every optimizer exposes whatever its element type: parameter groups' learning rates,
/// zero_grad() and step().
class OptimizerBase {
public:
    OptimizerBase() = default;
    OptimizerBase(const OptimizerBase&) = delete;
    OptimizerBase& operator=(const OptimizerBase&) = delete;
    virtual ~OptimizerBase() = default;

    /// Number of parameter groups (at least 1).
    virtual std::size_t num_param_groups() const noexcept = 0;
    /// Current learning rate of group i (i < num_param_groups()).
    virtual double group_lr(std::size_t i) const noexcept = 0;
    /// Sets the learning rate of group i; schedulers call it.
    virtual void set_group_lr(std::size_t i, double lr) noexcept = 0;
    /// The learning rate group i was given at construction (torch's "initial_lr"): schedulers
    /// scale this one, so that several schedulers in sequence start from the same base.
    virtual double group_initial_lr(std::size_t i) const noexcept = 0;

    /// Clears the gradients of every parameter this optimizer updates.
    virtual void zero_grad() noexcept = 0;
    /// One update of every trainable parameter from its gradient.
    virtual void step() = 0;
    /// Number of step() calls taken so far.
    virtual std::size_t steps_taken() const noexcept = 0;

    /// The current learning rate of the first group, as libtorch users read it.
    double lr() const noexcept { return group_lr(0); }
};

}  // namespace sft::optim
