/// @file early_stopping.hpp
/// sft::train::EarlyStopping: stops training when a monitored metric stops improving, and can put
/// the best weights back, as Keras' keras.callbacks.EarlyStopping (monitor, mode, min_delta,
/// patience, baseline, start_from_epoch, restore_best_weights) and Hugging Face's
/// EarlyStoppingCallback (patience counted in evaluations, so it also works with eval_steps).
#pragma once

#include <sft/error.hpp>
#include <sft/train/callback.hpp>
#include <sft/train/monitor.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace sft::train {

/// Options of EarlyStopping: EarlyStoppingOptions("val_loss").patience(3).restore_best(true).
class EarlyStoppingOptions {
public:
    /// Watches the logged metric `monitor` ("val_loss", "val_accuracy", "loss", ...).
    explicit EarlyStoppingOptions(std::string monitor = "val_loss") : monitor_(std::move(monitor)) {}

    const std::string& monitor() const noexcept { return monitor_; }
    /// Mode::min, Mode::max, or Mode::inferred from the name (default): "acc" -> max, "loss" -> min.
    EarlyStoppingOptions& mode(Mode v) noexcept { mode_ = v; return *this; }
    Mode mode() const noexcept { return mode_; }
    /// Smallest change that counts as an improvement (default 0; its absolute value is used, as Keras).
    EarlyStoppingOptions& min_delta(double v) noexcept { min_delta_ = std::fabs(v); return *this; }
    double min_delta() const noexcept { return min_delta_; }
    /// Evaluations without improvement after which training stops (default 0, as Keras).
    EarlyStoppingOptions& patience(std::size_t v) noexcept { patience_ = v; return *this; }
    std::size_t patience() const noexcept { return patience_; }
    /// A value the metric must beat: until it does, the wait counter is not reset (Keras' baseline).
    EarlyStoppingOptions& baseline(double v) noexcept { baseline_ = v; return *this; }
    const std::optional<double>& baseline() const noexcept { return baseline_; }
    /// Evaluations during epochs 1..start_from_epoch are ignored (warm-up), as Keras'
    /// start_from_epoch (default 0: watch from the first epoch).
    EarlyStoppingOptions& start_from_epoch(std::size_t v) noexcept { start_from_epoch_ = v; return *this; }
    std::size_t start_from_epoch() const noexcept { return start_from_epoch_; }
    /// At the end of training, put back the weights of the best evaluation (default false, as Keras).
    EarlyStoppingOptions& restore_best(bool v) noexcept { restore_best_ = v; return *this; }
    bool restore_best() const noexcept { return restore_best_; }

private:
    std::string monitor_;
    Mode mode_ = Mode::inferred;
    double min_delta_ = 0.0;
    std::size_t patience_ = 0;
    std::optional<double> baseline_;
    std::size_t start_from_epoch_ = 0;
    bool restore_best_ = false;
};

/// Stops training when `monitor` has not improved by more than min_delta for `patience`
/// evaluations, following Keras' EarlyStopping.on_epoch_end step by step (one evaluation per
/// epoch by default): the first watched evaluation sets the best; each later one either improves
/// (best updated, wait reset when the baseline is also beaten) or increments the wait, and a wait
/// reaching patience stops training. With restore_best, the weights of the best evaluation are
/// copied back at on_train_end, whether training stopped early or not (Keras 3).
///
/// Throws sft::Error at the first evaluation when the monitored metric is not logged (kind key,
/// naming it and the metrics available) or its mode cannot be inferred (kind invalid_argument).
class EarlyStopping : public Callback {
public:
    explicit EarlyStopping(EarlyStoppingOptions options = EarlyStoppingOptions()) : options_(std::move(options)) {
        mode_ = resolve_mode(options_.monitor(), options_.mode(), "EarlyStopping");
    }

    const EarlyStoppingOptions& options() const noexcept { return options_; }
    /// The resolved mode (min or max).
    Mode mode() const noexcept { return mode_; }
    /// Best value seen (NaN before the first watched evaluation).
    double best() const noexcept { return best_; }
    /// Epoch number (1-based) of the best value; 0 before the first watched evaluation.
    std::size_t best_epoch() const noexcept { return best_epoch_; }
    /// Optimizer step of the best value.
    std::size_t best_step() const noexcept { return best_step_; }
    /// Epoch number during which training was stopped, 0 if it was not.
    std::size_t stopped_epoch() const noexcept { return stopped_epoch_; }
    /// Evaluations since the last improvement.
    std::size_t wait() const noexcept { return wait_; }

    void on_train_begin(TrainState&) override {
        // Reusable across fits, as Keras.
        wait_ = 0;
        stopped_epoch_ = 0;
        best_ = std::nan("");
        has_best_ = false;
        best_epoch_ = best_step_ = 0;
        watched_ = 0;
        best_weights_.reset();
    }

    void on_evaluate(TrainState& state) override {
        const double current = state.metric(options_.monitor(), "EarlyStopping");
        if (state.epoch <= options_.start_from_epoch()) return;  // warm-up: not watched
        ++watched_;
        if (options_.restore_best() && !best_weights_) {
            // Keras: if best weights were never set, the current weights are the best.
            best_weights_ = state.model->snapshot();
            best_epoch_ = state.epoch;
            best_step_ = state.global_step;
        }
        ++wait_;
        if (!has_best_ || is_improvement(current, best_, mode_, options_.min_delta())) {
            best_ = current;
            has_best_ = true;
            best_epoch_ = state.epoch;
            best_step_ = state.global_step;
            if (options_.restore_best()) best_weights_ = state.model->snapshot();
            // Only restart the wait when both the baseline and the previous best are beaten.
            if (!options_.baseline() || is_improvement(current, *options_.baseline(), mode_, options_.min_delta())) wait_ = 0;
            return;
        }
        // Keras' `epoch > 0`: never on the first watched evaluation.
        if (wait_ >= options_.patience() && watched_ > 1) {
            stopped_epoch_ = state.epoch;
            state.request_stop(fmt::format("EarlyStopping: {} did not improve on {} (epoch {}) for {} evaluation{}", options_.monitor(),
                                           best_, best_epoch_, wait_, wait_ == 1 ? "" : "s"));
        }
    }

    void on_train_end(TrainState&) override {
        if (options_.restore_best() && best_weights_) best_weights_->restore();
    }

private:
    EarlyStoppingOptions options_;
    Mode mode_;
    double best_ = std::nan("");
    bool has_best_ = false;
    std::size_t best_epoch_ = 0;
    std::size_t best_step_ = 0;
    std::size_t stopped_epoch_ = 0;
    std::size_t wait_ = 0;
    std::size_t watched_ = 0;
    std::unique_ptr<WeightsSnapshot> best_weights_;
};

}  // namespace sft::train
