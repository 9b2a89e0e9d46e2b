/// @file fit_options.hpp
/// sft::train::FitOptions: how Trainer::fit trains, in libtorch's builder style:
/// FitOptions().epochs(5).batch_size(32).seed(7). Each option's default is given below; names
/// follow Hugging Face's TrainingArguments where one exists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sft::train {

/// Options of Trainer::fit.
class FitOptions {
public:
    /// Passes over the training set (default 1). Ignored when max_steps is set.
    FitOptions& epochs(std::size_t v) noexcept { epochs_ = v; return *this; }
    std::size_t epochs() const noexcept { return epochs_; }
    /// Total optimizer steps; when > 0 it overrides epochs, as Hugging Face's max_steps (default 0: unset).
    FitOptions& max_steps(std::size_t v) noexcept { max_steps_ = v; return *this; }
    std::size_t max_steps() const noexcept { return max_steps_; }
    /// Samples per batch (default 32).
    FitOptions& batch_size(std::size_t v) noexcept { batch_size_ = v; return *this; }
    std::size_t batch_size() const noexcept { return batch_size_; }
    /// Samples per batch when evaluating (default 0: batch_size).
    FitOptions& eval_batch_size(std::size_t v) noexcept { eval_batch_size_ = v; return *this; }
    std::size_t eval_batch_size() const noexcept { return eval_batch_size_ ? eval_batch_size_ : batch_size_; }
    /// Reshuffle the training set every epoch (default true).
    FitOptions& shuffle(bool v) noexcept { shuffle_ = v; return *this; }
    bool shuffle() const noexcept { return shuffle_; }
    /// Seed of the shuffling (default 0): the same seed gives the same batches.
    FitOptions& seed(std::uint64_t v) noexcept { seed_ = v; return *this; }
    std::uint64_t seed() const noexcept { return seed_; }
    /// Drop the last, smaller batch of each epoch (default false).
    FitOptions& drop_last(bool v) noexcept { drop_last_ = v; return *this; }
    bool drop_last() const noexcept { return drop_last_; }
    /// Batches whose gradients add up before one optimizer step (default 1). The loss gradient
    /// of each batch is weighted by its share of the step's samples, so that k batches of B give
    /// the gradient of one batch of kB. An epoch's leftover batches make one last, shorter step.
    FitOptions& gradient_accumulation_steps(std::size_t v) noexcept { accumulation_ = v; return *this; }
    std::size_t gradient_accumulation_steps() const noexcept { return accumulation_; }
    /// Clip the gradients to this global L2 norm before each step, as torch.nn.utils.clip_grad_norm_
    /// (default 0: no clipping; the norm is logged either way).
    FitOptions& max_grad_norm(double v) noexcept { max_grad_norm_ = v; return *this; }
    double max_grad_norm() const noexcept { return max_grad_norm_; }
    /// Evaluate every this many optimizer steps (default 0: at the end of every epoch).
    FitOptions& eval_steps(std::size_t v) noexcept { eval_steps_ = v; return *this; }
    std::size_t eval_steps() const noexcept { return eval_steps_; }
    /// Compute "accuracy" (argmax of [N, C] outputs against the labels; default true).
    FitOptions& accuracy(bool v) noexcept { accuracy_ = v; return *this; }
    bool accuracy() const noexcept { return accuracy_; }
    /// The metric handed to a scheduler that needs one (ReduceLROnPlateau) after each
    /// evaluation (default "": "val_loss" with a validation set, "loss" without).
    FitOptions& scheduler_metric(std::string v) { scheduler_metric_ = std::move(v); return *this; }
    const std::string& scheduler_metric() const noexcept { return scheduler_metric_; }
    /// A JSON Lines file written as training goes: one object per step, evaluation and epoch
    /// (default "": none). See JsonlLog.
    FitOptions& log_file(std::string v) { log_file_ = std::move(v); return *this; }
    const std::string& log_file() const noexcept { return log_file_; }
    /// 0: silent; 1: progress bar on a terminal, periodic lines elsewhere (default); 2: one line
    /// per epoch. Printed on stderr.
    FitOptions& verbose(int v) noexcept { verbose_ = v; return *this; }
    int verbose() const noexcept { return verbose_; }

private:
    std::size_t epochs_ = 1;
    std::size_t max_steps_ = 0;
    std::size_t batch_size_ = 32;
    std::size_t eval_batch_size_ = 0;
    bool shuffle_ = true;
    std::uint64_t seed_ = 0;
    bool drop_last_ = false;
    std::size_t accumulation_ = 1;
    double max_grad_norm_ = 0.0;
    std::size_t eval_steps_ = 0;
    bool accuracy_ = true;
    std::string scheduler_metric_;
    std::string log_file_;
    int verbose_ = 1;
};

}  // namespace sft::train
