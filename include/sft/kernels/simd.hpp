/// @file simd.hpp
/// The one place that includes xsimd: picks the SIMD architecture at compile time from the
/// consumer's -march flags (xsimd::default_arch), or none when SFT_NO_SIMD is 1 or xsimd finds
/// no supported instruction set. Internal: namespace sft::kernels.
#pragma once

#include <sft/config.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if !SFT_NO_SIMD
#include <xsimd/xsimd.hpp>
#endif
#if !SFT_NO_SIMD && defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sft::kernels {

/// SFT_KERNELS_SIMD: 1 when the kernels take their xsimd path, 0 on the scalar path. Internal to
/// kernels/ (it can only be known after including xsimd, hence here rather than in config.hpp).
#if !SFT_NO_SIMD && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
#define SFT_KERNELS_SIMD 1
#else
#define SFT_KERNELS_SIMD 0
#endif

/// Prefetches the cache line `bytes` past p (for writing when Write): a hint that never faults.
/// The address is computed on integers, so that a line past the end of p's array is no
/// out-of-range pointer arithmetic.
template <bool Write = false, class T>
inline void prefetch_ahead(const T* p, std::size_t bytes) noexcept {
    const void* line = reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) + bytes);
    __builtin_prefetch(line, Write ? 1 : 0, 3);
}

#if SFT_KERNELS_SIMD
/// True when the kernels use xsimd; false on the scalar path.
inline constexpr bool simd_enabled = true;
/// The xsimd batch of T for the architecture picked at compile time.
template <class T>
using Batch = xsimd::batch<T, xsimd::default_arch>;
/// Name of the compiled architecture ("avx512bw", "avx2", "sse2", "scalar").
inline const char* simd_arch_name() noexcept { return xsimd::default_arch::name(); }

/// a * b + c rounded once: an FMA instruction on every instruction set with one. xsimd 8's
/// xsimd::fma has no AVX-512 version: its generic a * b + c is an FMA only where the compiler
/// contracts it (GCC at -O2 and above with its default -ffp-contract=fast; not at -O1 nor with
/// -ffp-contract=off), where it is a multiply and an add instead, rounded twice and half as
/// fast. Kernels whose bits must not depend on the build flags (the GEMM micro-kernels, whose
/// transposed twin uses _mm512_fmadd_ps) call this one.
template <class T>
inline Batch<T> fma_once(const Batch<T>& a, const Batch<T>& b, const Batch<T>& c) noexcept {
#if defined(__AVX512F__)
    if constexpr (Batch<T>::size * sizeof(T) == 64 && std::is_same_v<T, float>) return Batch<T>(_mm512_fmadd_ps(a, b, c));
    else if constexpr (Batch<T>::size * sizeof(T) == 64 && std::is_same_v<T, double>) return Batch<T>(_mm512_fmadd_pd(a, b, c));
    else return xsimd::fma(a, b, c);
#else
    return xsimd::fma(a, b, c);
#endif
}

/// The sum of the lanes of v, added pairwise. Used instead of xsimd::hadd, whose AVX-512 double
/// version makes GCC 12 report -Wuninitialized inside its own intrinsics (_mm512_extractf64x4_pd)
/// wherever it is inlined; the cost is one store per reduction.
template <class T>
inline T reduce_lanes(const Batch<T>& v) noexcept {
    constexpr std::size_t w = Batch<T>::size;
    alignas(64) T lanes[w];
    v.store_aligned(lanes);
    for (std::size_t half = w / 2; half > 0; half /= 2)
        for (std::size_t l = 0; l < half; ++l) lanes[l] += lanes[l + half];
    return lanes[0];
}
#else
inline constexpr bool simd_enabled = false;
inline const char* simd_arch_name() noexcept { return "scalar"; }
#endif

}  // namespace sft::kernels
