/// @file parallel.hpp
/// The number of threads sft's kernels use (GEMM, large elementwise kernels, optimizer updates),
/// as torch.set_num_threads / torch.get_num_threads. sft runs them on its own persistent thread
/// pool (sft/detail/thread_pool.hpp): no OpenMP needed. Results do not depend on this number.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/error.hpp>

#include <cstddef>
#include <string>

namespace sft {

/// Sets the number of threads of sft's kernels, the calling thread included (default: the
/// hardware's concurrency). Waits for running kernels of other threads to finish. Throws
/// sft::Error (invalid_argument) when n is 0.
inline void set_num_threads(std::size_t n) {
    if (n == 0) throw Error(ErrorKind::invalid_argument, "set_num_threads(0): the number of threads must be at least 1");
    detail::ThreadPool::instance().set_num_threads(n);
}

/// The number of threads sft's kernels use, the calling thread included (>= 1).
inline std::size_t get_num_threads() { return detail::ThreadPool::instance().num_threads(); }

}  // namespace sft
