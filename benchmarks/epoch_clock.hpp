// Clocks and memory figures shared by the epoch programs (mlp_epoch, conv_epoch and their peers
// in peers/): the wall clock, the process' CPU time and its peak resident set size.
#pragma once

#include <sys/resource.h>

#include <chrono>

namespace sft_bench {

/// Seconds of a monotonic wall clock.
inline double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/// CPU time of the process (user + system, every thread): robust to other processes on a shared
/// machine, unlike the wall clock.
inline double cpu_s() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/// Peak resident set size of the process so far, in MiB.
inline double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace sft_bench
