/// @file progress.hpp
/// sft::train::ProgressBar: what a fit prints while it runs, on stderr by default. On a terminal
/// (isatty) a bar redrawn in place, at most ten times a second:
///   epoch 2/5 [=========>          ] 37/120  1234 samples/s  ETA 0:12  loss 0.4321  lr 1.00e-03
/// Elsewhere (CI logs, pipes) plain lines, one every 10 seconds (or every N steps if asked), that
/// read well in a log file:
///   epoch 2/5 step 37/120 (global 157/600)  1234 samples/s  ETA 0:12  loss 0.4321  lr 1.00e-03
/// and, either way, one summary line per epoch with its metrics. Trainer adds one according to
/// FitOptions::verbose (0 silent, 1 bar or lines, 2 epoch lines only).
///
/// Cost per step: a clock read and a comparison. A redraw (at most every 100 ms, and at the
/// epoch's last step) formats into a buffer on the stack (fmt::memory_buffer) and writes it with
/// one fwrite: the training step stays free of heap allocations.
#pragma once

#include <sft/train/callback.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace sft::train {

/// Appends "0:07", "12:34" or "1:02:03" (or "?" for a negative or non-finite time) to `out`.
inline void format_duration_to(fmt::memory_buffer& out, double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) {
        out.push_back('?');
        return;
    }
    const auto s = static_cast<long long>(std::llround(seconds));
    if (s >= 3600) fmt::format_to(std::back_inserter(out), "{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    else fmt::format_to(std::back_inserter(out), "{}:{:02}", s / 60, s % 60);
}

/// "0:07", "12:34" or "1:02:03" (or "?").
inline std::string format_duration(double seconds) {
    fmt::memory_buffer out;
    format_duration_to(out, seconds);
    return fmt::to_string(out);
}

/// True when `stream` is a terminal (always false where isatty is not available).
inline bool is_terminal(std::FILE* stream) noexcept {
#if defined(__unix__) || defined(__APPLE__)
    return stream != nullptr && ::isatty(::fileno(stream)) == 1;
#else
    (void)stream;
    return false;
#endif
}

/// Prints training progress (see the file comment).
class ProgressBar : public Callback {
public:
    /// verbosity 0: nothing; 1: bar on a terminal, periodic lines elsewhere, plus epoch lines;
    /// 2: epoch lines only. `terminal` overrides the isatty test; `line_every` is the number of
    /// steps between plain lines (0: a line when 10 seconds have passed since the last one).
    explicit ProgressBar(int verbosity = 1, std::FILE* stream = stderr, std::optional<bool> terminal = std::nullopt,
                         std::size_t line_every = 0)
        : verbosity_(verbosity), stream_(stream), terminal_(terminal.value_or(is_terminal(stream))), line_every_(line_every) {}

    void on_train_begin(TrainState&) override {
        train_start_ = Clock::now();
    }

    void on_epoch_begin(TrainState& state) override {
        epoch_start_ = Clock::now();
        // A bar is drawn at the first step; plain lines wait for their interval.
        last_draw_ = terminal_ ? Clock::time_point() : epoch_start_;
        samples_at_epoch_start_ = state.samples_seen;
        loss_sum_ = 0.0;
        loss_samples_ = 0;
        last_samples_ = state.samples_seen;
    }

    void on_step_end(TrainState& state) override {
        const std::size_t n = state.samples_seen - last_samples_;
        last_samples_ = state.samples_seen;
        auto it = state.logs.find("loss");
        if (it != state.logs.end()) {
            loss_sum_ += it->second * static_cast<double>(n);
            loss_samples_ += n;
        }
        if (verbosity_ != 1 || !stream_) return;
        const auto now = Clock::now();
        const bool epoch_done = state.step_in_epoch == state.steps_per_epoch;
        fmt::memory_buffer line;  // inline storage: a redraw does not allocate
        if (terminal_) {
            if (!epoch_done && seconds(last_draw_, now) < bar_interval_s) return;
            last_draw_ = now;
            line.push_back('\r');
            bar_line(line, state, now);
            line.append(std::string_view("\x1b[K"));
            drawn_ = true;
        } else {
            const bool due = line_every_ ? state.step_in_epoch % line_every_ == 0 : seconds(last_draw_, now) >= plain_interval_s;
            if (!due) return;
            last_draw_ = now;
            plain_line(line, state, now);
            line.push_back('\n');
        }
        std::fwrite(line.data(), 1, line.size(), stream_);
        std::fflush(stream_);
    }

    void on_epoch_end(TrainState& state) override {
        if (verbosity_ == 0 || !stream_) return;
        if (drawn_) std::fputc('\n', stream_);
        drawn_ = false;
        fmt::memory_buffer line;
        fmt::format_to(std::back_inserter(line), "epoch {}/{} done in ", state.epoch, state.num_epochs);
        format_duration_to(line, seconds(epoch_start_, Clock::now()));
        line.push_back(':');
        for (const auto& [k, v] : state.logs) {
            fmt::format_to(std::back_inserter(line), " {} ", k);
            number_to(line, v);
        }
        line.push_back('\n');
        std::fwrite(line.data(), 1, line.size(), stream_);
        std::fflush(stream_);
    }

    void on_train_end(TrainState& state) override {
        if (verbosity_ == 0 || !stream_ || state.stop_reason.empty()) return;
        std::fprintf(stream_, "stopped at epoch %zu step %zu: %s\n", state.epoch, state.global_step, state.stop_reason.c_str());
        std::fflush(stream_);
    }

private:
    using Clock = std::chrono::steady_clock;
    static constexpr double bar_interval_s = 0.1;
    static constexpr double plain_interval_s = 10.0;
    static double seconds(Clock::time_point a, Clock::time_point b) noexcept { return std::chrono::duration<double>(b - a).count(); }
    static void number_to(fmt::memory_buffer& out, double v) {
        const double a = std::fabs(v);
        if (a != 0 && (a < 1e-3 || a >= 1e5)) fmt::format_to(std::back_inserter(out), "{:.3e}", v);
        else fmt::format_to(std::back_inserter(out), "{:.4f}", v);
    }

    /// Appends samples/s, ETA, loss and lr.
    void tail(fmt::memory_buffer& out, const TrainState& state, Clock::time_point now) const {
        const double epoch_s = seconds(epoch_start_, now);
        const double rate = epoch_s > 0 ? static_cast<double>(state.samples_seen - samples_at_epoch_start_) / epoch_s : 0.0;
        const double train_s = seconds(train_start_, now);
        const double eta = state.global_step ? train_s / static_cast<double>(state.global_step) *
                                                   static_cast<double>(state.max_steps - std::min(state.max_steps, state.global_step))
                                             : std::nan("");
        fmt::format_to(std::back_inserter(out), "  {:.0f} samples/s  ETA ", rate);
        format_duration_to(out, eta);
        if (loss_samples_) fmt::format_to(std::back_inserter(out), "  loss {:.4f}", loss_sum_ / static_cast<double>(loss_samples_));
        auto lr = state.logs.find("lr");
        if (lr != state.logs.end()) fmt::format_to(std::back_inserter(out), "  lr {:.2e}", lr->second);
    }

    void bar_line(fmt::memory_buffer& out, const TrainState& state, Clock::time_point now) const {
        constexpr std::size_t width = 20;
        const std::size_t total = std::max<std::size_t>(1, state.steps_per_epoch);
        const std::size_t filled = std::min(width, state.step_in_epoch * width / total);
        fmt::format_to(std::back_inserter(out), "epoch {}/{} [", state.epoch, state.num_epochs);
        for (std::size_t i = 0; i < width; ++i) out.push_back(i < filled ? '=' : i == filled ? '>' : ' ');
        fmt::format_to(std::back_inserter(out), "] {}/{}", state.step_in_epoch, state.steps_per_epoch);
        tail(out, state, now);
    }

    void plain_line(fmt::memory_buffer& out, const TrainState& state, Clock::time_point now) const {
        fmt::format_to(std::back_inserter(out), "epoch {}/{} step {}/{} (global {}/{})", state.epoch, state.num_epochs, state.step_in_epoch,
                       state.steps_per_epoch, state.global_step, state.max_steps);
        tail(out, state, now);
    }

    int verbosity_;
    std::FILE* stream_;
    bool terminal_;
    std::size_t line_every_;
    bool drawn_ = false;
    Clock::time_point train_start_, epoch_start_, last_draw_;
    std::size_t samples_at_epoch_start_ = 0;
    std::size_t last_samples_ = 0;
    double loss_sum_ = 0.0;
    std::size_t loss_samples_ = 0;
};

}  // namespace sft::train
