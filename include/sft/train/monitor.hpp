/// @file monitor.hpp
/// sft::train::Mode and the rule that compares a monitored metric with its best value, shared by
/// EarlyStopping, ModelCheckpoint and History::best.
#pragma once

#include <sft/error.hpp>

#include <fmt/format.h>

#include <string>

namespace sft::train {

/// Whether a monitored metric improves by going down (min) or up (max). `inferred` takes it from
/// the name, as Keras' mode="auto": a name containing "acc" is maximised, one containing "loss"
/// minimised.
enum class Mode { inferred, min, max };

/// `mode` itself, or for Mode::inferred the mode the metric's name implies ("acc" -> max, then
/// "loss" -> min). Throws sft::Error (kind invalid_argument) when the name implies neither; the
/// message names `who` (the caller, for the user to find) and the metric.
inline Mode resolve_mode(const std::string& metric, Mode mode, const std::string& who) {
    if (mode != Mode::inferred) return mode;
    if (metric.find("acc") != std::string::npos) return Mode::max;
    if (metric.find("loss") != std::string::npos) return Mode::min;
    throw Error(ErrorKind::invalid_argument,
                fmt::format("{}: cannot infer whether '{}' should be minimised or maximised (names containing \"acc\" are "
                            "maximised, \"loss\" minimised): give the mode, Mode::min or Mode::max",
                            who, metric));
}

/// "min" or "max" (or "inferred").
inline const char* mode_name(Mode mode) noexcept {
    return mode == Mode::min ? "min" : mode == Mode::max ? "max" : "inferred";
}

/// True when `current` improves on `reference` by more than `min_delta`, as Keras'
/// EarlyStopping._is_improvement: min: current + min_delta < reference; max: current - min_delta
/// > reference. A NaN current never improves. `mode` must be resolved (min or max).
inline bool is_improvement(double current, double reference, Mode mode, double min_delta = 0.0) noexcept {
    return mode == Mode::max ? current - min_delta > reference : current + min_delta < reference;
}

}  // namespace sft::train
