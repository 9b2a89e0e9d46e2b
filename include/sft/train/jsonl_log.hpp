/// @file jsonl_log.hpp
/// sft::train::JsonlLog: a JSON Lines file written as training goes, one object per line and
/// flushed line by line, so that a run can be plotted (or tailed) while it trains:
///   {"event":"step","epoch":1,"step":1,"loss":2.31,"lr":0.001,"grad_norm":1.7,"samples":32}
///   {"event":"eval","epoch":1,"step":8,"loss":2.1,"val_loss":2.2,"val_accuracy":0.31}
/// Non-finite numbers are written as null (JSON has no NaN).
#pragma once

#include <sft/detail/json.hpp>
#include <sft/error.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sft::train {

/// A JSON Lines writer. Closed (writes nothing) when constructed with an empty path.
class JsonlLog {
public:
    /// A log that writes nothing.
    JsonlLog() = default;
    /// Creates (truncates) `path`. Throws sft::Error (kind io) naming the file when it cannot be opened.
    explicit JsonlLog(const std::string& path) : path_(path) {
        if (path.empty()) return;
        file_.reset(std::fopen(path.c_str(), "w"));
        if (!file_)
            throw Error(ErrorKind::io, fmt::format("JsonlLog: cannot open '{}' for writing: {}", path, std::strerror(errno)));
    }

    bool is_open() const noexcept { return file_ != nullptr; }
    const std::string& path() const noexcept { return path_; }

    /// Writes one line {"event": event, <integers>..., <numbers>..., <strings>...} and flushes it.
    /// Throws sft::Error (kind io) when the write fails.
    void write(const std::string& event, const std::vector<std::pair<std::string, std::uint64_t>>& integers,
               const std::map<std::string, double>& numbers, const std::map<std::string, std::string>& strings = {}) {
        if (!file_) return;
        fmt::memory_buffer line;
        auto out = std::back_inserter(line);
        fmt::format_to(out, "{{\"event\":{}", sft::detail::json_quote(event));
        for (const auto& [k, v] : integers) fmt::format_to(out, ",{}:{}", sft::detail::json_quote(k), v);
        for (const auto& [k, v] : numbers) {
            fmt::format_to(out, ",{}:", sft::detail::json_quote(k));
            append_number(line, v);
        }
        for (const auto& [k, v] : strings) fmt::format_to(out, ",{}:{}", sft::detail::json_quote(k), sft::detail::json_quote(v));
        put_line(line);
    }

    /// The same line from keys and values listed in the order they are written, built in a
    /// buffer on the stack: no allocation (what the Trainer writes at every step). The keys are
    /// written as given, so they must need no JSON escaping (plain identifiers).
    /// Throws sft::Error (kind io) when the write fails.
    void write_values(const char* event, std::initializer_list<std::pair<const char*, std::uint64_t>> integers,
                      std::initializer_list<std::pair<const char*, double>> numbers) {
        if (!file_) return;
        fmt::memory_buffer line;
        auto out = std::back_inserter(line);
        fmt::format_to(out, "{{\"event\":\"{}\"", event);
        for (const auto& [k, v] : integers) fmt::format_to(out, ",\"{}\":{}", k, v);
        for (const auto& [k, v] : numbers) {
            fmt::format_to(out, ",\"{}\":", k);
            append_number(line, v);
        }
        put_line(line);
    }

    /// `v` as a JSON number, shortest round-trip form; null when not finite.
    static std::string number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : std::string("null"); }

private:
    static void append_number(fmt::memory_buffer& line, double v) {
        if (std::isfinite(v)) fmt::format_to(std::back_inserter(line), "{}", v);
        else line.append(std::string_view("null"));
    }
    void put_line(fmt::memory_buffer& line) {
        line.push_back('}');
        line.push_back('\n');
        if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() || std::fflush(file_.get()) != 0)
            throw Error(ErrorKind::io, fmt::format("JsonlLog: cannot write to '{}': {}", path_, std::strerror(errno)));
    }

    struct Closer {
        void operator()(std::FILE* f) const noexcept { std::fclose(f); }
    };
    std::string path_;
    std::unique_ptr<std::FILE, Closer> file_;
};

}  // namespace sft::train
