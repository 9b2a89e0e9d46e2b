/// @file config.hpp
/// Version and the only macros of sft (all prefixed SFT_).
#pragma once

#include <cassert>

#define SFT_VERSION_MAJOR 0
#define SFT_VERSION_MINOR 1
#define SFT_VERSION_PATCH 0

/// Debug-only check for kernels and internals (they never throw): compiled out under NDEBUG.
#define SFT_ASSERT(cond) assert(cond)

/// Set SFT_NO_SIMD=1 (a target compile definition) to force the scalar kernels everywhere.
#ifndef SFT_NO_SIMD
#define SFT_NO_SIMD 0
#endif

namespace sft {
/// The library version as "major.minor.patch".
inline constexpr const char* version = "0.1.0";
}  // namespace sft
