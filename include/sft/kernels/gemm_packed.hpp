/// @file gemm_packed.hpp
/// sft's own GEMM on raw row-major memory: C[m, n] = alpha * op(A) op(B) + beta * C, packed and
/// cache-blocked as in BLIS/GotoBLAS (Goto & van de Geijn, "Anatomy of high-performance matrix
/// multiplication", 2008), with an xsimd FMA micro-kernel and threads from sft's pool.
///
///  - op(B) is packed, kc x nc at a time, into panels NR columns wide (the vector operand:
///    rows of NR contiguous values, two SIMD registers), unless it is already laid out so
///    (B not transposed: read in place, see gemm_block); op(A), mc x kc at a time, into panels MR
///    rows tall (the broadcast operand). Packing reads A and B in place with their transposes and
///    leading dimensions, so the three products of a linear layer (x W^T, g W, g^T x) need no
///    transposed copy. Panels are zero-padded; edge tiles run the narrowest instance of the
///    micro-kernel that covers them (fitted_micro_kernel), with the same FMAs per element.
///  - The micro-kernel keeps an MR x NR tile of C in registers (12 x 32 floats on AVX-512:
///    24 of the 32 registers) over kc steps of one broadcast and two FMAs per row.
///  - x W^T (trans_b, float, AVX-512, m <= n) runs as (W x^T)^T (gemm_block_ct): W's rows are read
///    in place as the broadcast operand and only x is transposed in packing; the micro-tile is
///    transposed in registers before its store.
///  - Threads split C into blocks of whole panels; every element of C is computed the same way
///    whatever the block it falls in (the k blocking depends on k only), so the result does not
///    depend on the number of threads.
/// Internal: namespace sft::kernels. Kernels never throw.
#pragma once

#include <sft/config.hpp>
#include <sft/detail/lease_pool.hpp>
#include <sft/detail/thread_pool.hpp>
#include <sft/kernels/simd.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#if SFT_KERNELS_SIMD && defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sft::kernels {

namespace gemm_detail {

#if SFT_KERNELS_SIMD
/// The vector type of the micro-kernel: an xsimd batch.
template <class T>
struct Vec {
    using type = Batch<T>;
    static constexpr std::size_t width = Batch<T>::size;
    static type load_aligned(const T* p) noexcept { return type::load_aligned(p); }
    static type load(const T* p) noexcept { return type::load_unaligned(p); }
    static void store(const type& v, T* p) noexcept { v.store_unaligned(p); }
    static type broadcast(T x) noexcept { return type(x); }
    static type fma(const type& a, const type& b, const type& c) noexcept { return fma_once<T>(a, b, c); }
    static type zero() noexcept { return type(T(0)); }
    /// max(0, x) that keeps NaN (vmaxps returns its second operand when either is NaN).
    static type relu(const type& x) noexcept { return xsimd::max(zero(), x); }
};
#else
/// The vector type of the micro-kernel on the scalar path: one value.
template <class T>
struct Vec {
    using type = T;
    static constexpr std::size_t width = 1;
    static type load_aligned(const T* p) noexcept { return *p; }
    static type load(const T* p) noexcept { return *p; }
    static void store(const type& v, T* p) noexcept { *p = v; }
    static type broadcast(T x) noexcept { return x; }
    static type fma(const type& a, const type& b, const type& c) noexcept { return a * b + c; }
    static type zero() noexcept { return T(0); }
    static type relu(const type& x) noexcept { return x < T(0) ? T(0) : x; }
};
#endif

/// Loads and stores of the first `valid` (< width) lanes of a vector, the rest zero: edge tiles
/// meet C through them instead of through a copy (AVX-512, where the vector is a 512-bit register
/// and masks are free). `available` is false elsewhere; micro_kernel then copies edge tiles.
template <class T>
struct MaskedLanes {
    static constexpr bool available = false;
    static typename Vec<T>::type load(const T*, std::size_t) noexcept { return Vec<T>::zero(); }
    static void store(const typename Vec<T>::type&, T*, std::size_t) noexcept {}
};
#if SFT_KERNELS_SIMD && defined(__AVX512F__)
template <>
struct MaskedLanes<float> {
    static constexpr bool available = Vec<float>::width == 16;
    static __mmask16 mask(std::size_t valid) noexcept { return static_cast<__mmask16>((1u << valid) - 1u); }
    static Vec<float>::type load(const float* p, std::size_t valid) noexcept { return Vec<float>::type(_mm512_maskz_loadu_ps(mask(valid), p)); }
    static void store(const Vec<float>::type& v, float* p, std::size_t valid) noexcept { _mm512_mask_storeu_ps(p, mask(valid), v); }
};
template <>
struct MaskedLanes<double> {
    static constexpr bool available = Vec<double>::width == 8;
    static __mmask8 mask(std::size_t valid) noexcept { return static_cast<__mmask8>((1u << valid) - 1u); }
    static Vec<double>::type load(const double* p, std::size_t valid) noexcept { return Vec<double>::type(_mm512_maskz_loadu_pd(mask(valid), p)); }
    static void store(const Vec<double>::type& v, double* p, std::size_t valid) noexcept { _mm512_mask_storeu_pd(p, mask(valid), v); }
};
#endif

/// Register blocking: the micro-tile is MR rows by NV vectors (NR = NV * width columns).
template <class T>
struct Blocking {
#if SFT_KERNELS_SIMD && defined(__AVX512F__)
    static constexpr std::size_t mr = 12;  // 24 accumulators + 2 B vectors + 1 broadcast of 32 registers
    static constexpr std::size_t nv = 2;
#elif SFT_KERNELS_SIMD
    static constexpr std::size_t mr = 6;  // 12 accumulators + 2 + 1 of 16 registers (SSE/AVX2)
    static constexpr std::size_t nv = 2;
#else
    static constexpr std::size_t mr = 4;
    static constexpr std::size_t nv = 4;
#endif
    static constexpr std::size_t nr = nv * Vec<T>::width;
    // Cache blocking: a kc x NR panel of B stays in L1 while the micro-kernel walks the mc x kc
    // block of A (L2); the kc x nc block of B stays in L2 as well on current x86 cores (>= 1 MiB).
    static constexpr std::size_t kc_max = 256 * 4 / sizeof(T);
    static constexpr std::size_t mc_max = mr * (240 / mr);
    static constexpr std::size_t nc_max = nr * (2048 / nr);
};

/// Memory for packed panels: 64-byte aligned, grown on demand and kept per thread, so that a
/// steady-state training step allocates nothing.
template <class T>
class PackBuffer {
public:
    T* get(std::size_t n) {
        if (n > capacity_) {
            data_.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))));
            capacity_ = n;
        }
        return data_.get();
    }

private:
    struct Free {
        void operator()(T* p) const noexcept { ::operator delete(p, std::align_val_t(64)); }
    };
    std::unique_ptr<T, Free> data_;
    std::size_t capacity_ = 0;
};

/// The packing buffers of one running task, allocated at their largest size when created (only
/// the part a block uses is touched).
template <class T>
struct TaskBuffers {
    PackBuffer<T> a, b;
    TaskBuffers() {
        a.get(Blocking<T>::kc_max * Blocking<T>::mc_max);
        b.get(Blocking<T>::kc_max * Blocking<T>::nc_max);
    }
};

/// The buffers of a thread's serial products (`task`) and of the operand a threaded product
/// packs once for all its tasks (`shared`, grown to the largest product seen).
template <class T>
struct ThreadBuffers {
    TaskBuffers<T> task;
    PackBuffer<T> shared;
    static ThreadBuffers& local() {
        static thread_local ThreadBuffers buffers;
        return buffers;
    }
};

/// The tasks of a threaded product take their buffers from here: whichever thread the pool hands
/// a task to, a steady state allocates nothing once num_threads + 1 sets exist (the caller makes
/// sure of it before its first job at a thread count; more are added only if more tasks run at
/// once, e.g. two user threads starting products together).
template <class T>
class TaskBufferPool : public ::sft::detail::LeasePool<TaskBuffers<T>> {
public:
    static TaskBufferPool& instance() {
        static TaskBufferPool pool;
        return pool;
    }
};

/// A task's lease of one set of TaskBufferPool.
template <class T>
using TaskLease = ::sft::detail::Lease<TaskBufferPool<T>>;

/// The most threads whose packed operands run_own_packed keeps per job (more: see there).
inline constexpr std::size_t max_own_slots = 16;

/// Runs tasks 0..count-1 of a threaded product on the pool, each thread packing the product's
/// shared operand itself into a leased set of its own, on its first task, and keeping it for the
/// job: `pack(set)` packs it into `set`, `task(t, set)` computes task t from it. So there is no
/// packing job and no barrier before the products, and no packed lines move between the cores'
/// caches (a packing job split between 2 threads was measured no faster than one thread's).
/// A thread whose slot is past max_own_slots (a pool resized meanwhile) leases and packs per task.
template <class T, class Pack, class Task>
void run_own_packed(::sft::detail::ThreadPool& pool, std::size_t count, const Pack& pack, const Task& task) {
    std::array<std::optional<TaskLease<T>>, max_own_slots> own;
    pool.run(count, [&](std::size_t t) {
        const std::size_t slot = ::sft::detail::ThreadPool::thread_slot();
        std::optional<TaskLease<T>> spare;
        std::optional<TaskLease<T>>& lease = slot < max_own_slots ? own[slot] : spare;
        if (!lease) {
            lease.emplace();
            pack(**lease);
        }
        task(t, **lease);
    });
}

#if SFT_KERNELS_SIMD && defined(__AVX512F__)
/// Transposes a block of 16 values from each of `rows` (<= 16) rows into 16 rows of `rows`
/// values: dst[p * ldd + r] = src[r][p] for p < 16, r < rows. 64 in-register shuffles per
/// 256 values instead of a load and a store per value (the packing of op(A) and op(B) with
/// k along their rows: x W^T's both operands). Rows past `rows` are read from row 0 and not stored.
inline void transpose16_regs(__m512 (&r)[16], __m512 (&out)[16]) noexcept {
    // The zero-masking forms with a full mask compile to the plain instructions; the plain
    // intrinsics make GCC 12 report -Wuninitialized inside its own headers (_mm512_undefined_ps).
    constexpr __mmask16 all = 0xFFFF;
    constexpr __mmask8 all8 = 0xFF;
    __m512 t[16];
    for (std::size_t i = 0; i < 16; i += 2) {  // pairs of rows interleaved, per 128-bit lane
        t[i] = _mm512_maskz_unpacklo_ps(all, r[i], r[i + 1]);
        t[i + 1] = _mm512_maskz_unpackhi_ps(all, r[i], r[i + 1]);
    }
    for (std::size_t g = 0; g < 4; ++g) {  // r[4g + q], lane L: column 4L + q of rows 4g..4g+3
        const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(all8, t0, t2));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(all8, t0, t2));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(all8, t1, t3));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(all8, t1, t3));
    }
    for (std::size_t q = 0; q < 4; ++q) {  // 4 x 4 transpose of 128-bit lanes across r[q], r[4+q], r[8+q], r[12+q]
        const __m512 v0 = _mm512_maskz_shuffle_f32x4(all, r[q], r[4 + q], 0x44), v1 = _mm512_maskz_shuffle_f32x4(all, r[q], r[4 + q], 0xEE);
        const __m512 v2 = _mm512_maskz_shuffle_f32x4(all, r[8 + q], r[12 + q], 0x44), v3 = _mm512_maskz_shuffle_f32x4(all, r[8 + q], r[12 + q], 0xEE);
        out[q] = _mm512_maskz_shuffle_f32x4(all, v0, v2, 0x88);
        out[4 + q] = _mm512_maskz_shuffle_f32x4(all, v0, v2, 0xDD);
        out[8 + q] = _mm512_maskz_shuffle_f32x4(all, v1, v3, 0x88);
        out[12 + q] = _mm512_maskz_shuffle_f32x4(all, v1, v3, 0xDD);
    }
}

/// Transposes a block of 16 values from each of `rows` (<= 16) rows into 16 rows of `rows`
/// values: dst[p * ldd + r] = src[r][p] for p < 16, r < rows. 64 in-register shuffles per
/// 256 values instead of a load and a store per value (the packing of op(A) and op(B) with
/// k along their rows). Rows past `rows` are read from row 0 and not stored.
inline void transpose16(const float* const* src, std::size_t rows, float* dst, std::size_t ldd) noexcept {
    __m512 r[16], out[16];
    for (std::size_t i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src[i < rows ? i : 0]);
    transpose16_regs(r, out);
    const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1u);
    for (std::size_t p = 0; p < 16; ++p) {
        if (rows == 16) _mm512_storeu_ps(dst + p * ldd, out[p]);
        else _mm512_mask_storeu_ps(dst + p * ldd, mask, out[p]);
    }
}
inline constexpr bool has_transpose16 = true;
#else
inline constexpr bool has_transpose16 = false;
inline void transpose16(const float* const*, std::size_t, float*, std::size_t) noexcept {}
#endif

/// Packs op(A)[i0 : i0 + rows, p0 : p0 + kc] into panels of MR rows: panel r holds, for each p,
/// the MR values of column p (rows past `rows` are zero).
template <class T>
void pack_a(bool trans, const T* a, std::size_t lda, std::size_t i0, std::size_t rows, std::size_t p0, std::size_t kc, T* dst) noexcept {
    constexpr std::size_t mr = Blocking<T>::mr;
    for (std::size_t r = 0; r < rows; r += mr, dst += mr * kc) {
        const std::size_t h = std::min(mr, rows - r);
        if (!trans) {  // op(A)(i, p) = a[i lda + p]: read rows, write with stride MR
            std::size_t p_done = 0;
            if constexpr (std::is_same_v<T, float> && has_transpose16 && mr <= 16) {
                const float* rows_ptr[16];
                for (std::size_t i = 0; i < 16; ++i) rows_ptr[i] = a + (i0 + r + (i < h ? i : 0)) * lda + p0;
                for (; p_done + 16 <= kc; p_done += 16) {
                    transpose16(rows_ptr, h, dst + p_done * mr, mr);
                    for (auto& q : rows_ptr) q += 16;
                }
            }
            for (std::size_t i = 0; i < h; ++i) {
                const T* src = a + (i0 + r + i) * lda + p0;
                T* d = dst + p_done * mr + i;
                for (const T* q = src + p_done; q < src + kc; ++q, d += mr) *d = *q;
            }
        } else {  // op(A)(i, p) = a[p lda + i]: MR contiguous values per p
            for (std::size_t p = 0; p < kc; ++p) {
                const T* src = a + (p0 + p) * lda + i0 + r;
                for (std::size_t i = 0; i < h; ++i) dst[p * mr + i] = src[i];
            }
        }
        if (h < mr)
            for (std::size_t p = 0; p < kc; ++p)
                for (std::size_t i = h; i < mr; ++i) dst[p * mr + i] = T(0);
    }
}

/// Packs op(B)[p0 : p0 + kc, j0 : j0 + cols] into panels of NR columns: panel s holds, for each p,
/// the NR values of row p (columns past `cols` are zero).
template <class T>
void pack_b(bool trans, const T* b, std::size_t ldb, std::size_t p0, std::size_t kc, std::size_t j0, std::size_t cols, T* dst) noexcept {
    constexpr std::size_t nr = Blocking<T>::nr;
    for (std::size_t s = 0; s < cols; s += nr, dst += nr * kc) {
        const std::size_t w = std::min(nr, cols - s);
        if (!trans) {  // op(B)(p, j) = b[p ldb + j]: NR contiguous values per p
            for (std::size_t p = 0; p < kc; ++p) {
                const T* src = b + (p0 + p) * ldb + j0 + s;
                T* d = dst + p * nr;
                if (w == nr) std::memcpy(d, src, nr * sizeof(T));
                else {
                    for (std::size_t j = 0; j < w; ++j) d[j] = src[j];
                    for (std::size_t j = w; j < nr; ++j) d[j] = T(0);
                }
            }
        } else {  // op(B)(p, j) = b[j ldb + p]: read rows of B, write with stride NR
            std::size_t j = 0;
            if constexpr (std::is_same_v<T, float> && has_transpose16 && nr % 16 == 0) {
                if (w == nr) {  // 16 x 16 blocks through registers, the rest below
                    std::size_t p = 0;
                    for (; p + 16 <= kc; p += 16)
                        for (std::size_t jb = 0; jb < nr; jb += 16) {
                            const float* rows_ptr[16];
                            for (std::size_t i = 0; i < 16; ++i) rows_ptr[i] = b + (j0 + s + jb + i) * ldb + p0 + p;
                            transpose16(rows_ptr, 16, dst + p * nr + jb, nr);
                        }
                    for (std::size_t jj = 0; jj < nr; ++jj) {
                        const T* src = b + (j0 + s + jj) * ldb + p0;
                        T* d = dst + p * nr + jj;
                        for (const T* q = src + p; q < src + kc; ++q, d += nr) *d = *q;
                    }
                    continue;
                }
            }
            // Four rows at a time: four read streams, four stores into each written line.
            for (; j + 4 <= w; j += 4) {
                const T* s0 = b + (j0 + s + j) * ldb + p0;
                const T* s1 = s0 + ldb;
                const T* s2 = s1 + ldb;
                const T* s3 = s2 + ldb;
                T* d = dst + j;
                for (std::size_t p = 0; p < kc; ++p, d += nr) {
                    d[0] = s0[p];
                    d[1] = s1[p];
                    d[2] = s2[p];
                    d[3] = s3[p];
                }
            }
            for (; j < w; ++j) {
                const T* src = b + (j0 + s + j) * ldb + p0;
                for (std::size_t p = 0; p < kc; ++p) dst[p * nr + j] = src[p];
            }
            if (w < nr)
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t jj = w; jj < nr; ++jj) dst[p * nr + jj] = T(0);
        }
    }
}

/// What the last k block applies to a tile before it is stored: + bias[j] (when not null), then
/// max(0, x) when relu. gemm_bias_act's fused epilogue.
template <class T>
struct Epilogue {
    const T* bias = nullptr;
    bool relu = false;
};

/// How a micro-tile meets C: C = ep(alpha acc + beta C), with beta ignored (C not read) when
/// `overwrite` (the first k block under beta == 0); `bias` (already offset to the tile's first
/// column) and `relu` are set on the last k block only.
template <class T>
struct Update {
    T alpha;
    T beta;
    bool overwrite;
    const T* bias = nullptr;
    bool relu = false;
};

/// The micro-kernel: acc[MR x NR] = sum over kc steps p of (the MR values of A at a + p as, packed:
/// as = MR) x (the NR values of B at b + p bs: a packed panel, bs = NR, or B in place, bs = ldb),
/// then the update of the h x w corner of C at c (row stride ldc). Full and edge tiles do the same
/// arithmetic (edges through masked loads and stores on AVX-512, through a local tile elsewhere),
/// so every element is computed identically.
/// MR and NV default to the full tile; edge tiles run a narrower instance (see fitted_micro_kernel),
/// reading the first MR values of each packed A step (as is still the panel's height) and the
/// first NV vectors of each B step: each element's chain of FMAs is the same in every instance.
template <class T, std::size_t MR = Blocking<T>::mr, std::size_t NV = Blocking<T>::nv>
void micro_kernel(std::size_t kc, const T* __restrict a, std::size_t as, const T* __restrict b, std::size_t bs, T* c, std::size_t ldc,
                  std::size_t h, std::size_t w, const Update<T>& up) noexcept {
    using V = Vec<T>;
    using VT = typename V::type;
    constexpr std::size_t mr = MR, nv = NV, vw = V::width, nr = nv * vw;
    // The tile of C is read (beta != 0) or written only after kc steps: fetch its lines now, so
    // that with a short k (a weight gradient's k is the batch) its misses overlap the FMAs.
    for (std::size_t i = 0; i < h; ++i) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + w - 1, 1, 3);
    }
    VT acc[mr][nv];
#pragma GCC unroll 16
    for (std::size_t i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < nv; ++v) acc[i][v] = V::zero();
    // B read in place (bs = its row stride, not NR) moves to a new row of B at each k step, a
    // stride the hardware prefetchers do not follow: the row 8 steps on is fetched now (measured,
    // benchmarks/gemm_ab.sh: dX 5-7% faster at batch 128, 16-20% at batch 32). For a packed panel
    // (bs = NR) the same two prefetches cost nothing measurable; a copy of the loop without them
    // for that case was 2% slower on the weight gradients (code layout).
    constexpr std::size_t ahead = 8;
    // Unrolled 4 times: measured 4-19% faster than the plain loop (2 and 8: less; benchmarks/RESULTS.md).
#pragma GCC unroll 4
    for (std::size_t p = 0; p < kc; ++p, a += as, b += bs) {
        prefetch_ahead(b, ahead * bs * sizeof(T));  // may lie past B's end: a hint on an address, never a read
        prefetch_ahead(b, (ahead * bs + nr - 1) * sizeof(T));
        VT bv[nv];
#pragma GCC unroll 4
        for (std::size_t v = 0; v < nv; ++v) bv[v] = V::load(b + v * vw);
#pragma GCC unroll 16
        for (std::size_t i = 0; i < mr; ++i) {
            const VT av = V::broadcast(a[i]);
#pragma GCC unroll 4
            for (std::size_t v = 0; v < nv; ++v) acc[i][v] = V::fma(av, bv[v], acc[i][v]);
        }
    }
    const bool full = h == mr && w == nr;
    if (full && up.alpha == T(1) && !up.bias && !up.relu && (up.overwrite || up.beta == T(1))) {
        // The plain updates of the training products (x W^T and g W store, g^T x accumulates
        // into the gradient) without the multiplies: 1 x = x, and fma(1, c, x) = c + x rounded
        // once, so the values are those of the general update below.
#pragma GCC unroll 16
        for (std::size_t i = 0; i < mr; ++i)
#pragma GCC unroll 4
            for (std::size_t v = 0; v < nv; ++v) {
                T* q = c + i * ldc + v * vw;
                V::store(up.overwrite ? acc[i][v] : acc[i][v] + V::load(q), q);
            }
        return;
    }
    const VT alpha = V::broadcast(up.alpha), beta = V::broadcast(up.beta);
    alignas(64) T tile[mr * nr];
    alignas(64) T bias_tile[nr];
    const T* bias = up.bias;
    if (bias && w < nr) {  // edge tile: the bias padded with zeros
        for (std::size_t j = 0; j < nr; ++j) bias_tile[j] = j < w ? bias[j] : T(0);
        bias = bias_tile;
    }
    VT bias_v[nv];
#pragma GCC unroll 4
    for (std::size_t v = 0; v < nv; ++v) bias_v[v] = bias ? V::load(bias + v * vw) : V::zero();
    if constexpr (MaskedLanes<T>::available) {
        if (!full) {  // edge tile: the valid rows, the valid lanes of each vector
            using M = MaskedLanes<T>;
#pragma GCC unroll 16
            for (std::size_t i = 0; i < mr; ++i) {
                if (i >= h) break;
#pragma GCC unroll 4
                for (std::size_t v = 0; v < nv; ++v) {
                    if (v * vw >= w) break;
                    const std::size_t lanes = w - v * vw;
                    T* q = c + i * ldc + v * vw;
                    VT r = alpha * acc[i][v];
                    if (lanes >= vw) {
                        if (!up.overwrite) r = r + beta * V::load(q);
                        if (bias) r = r + bias_v[v];
                        if (up.relu) r = V::relu(r);
                        V::store(r, q);
                    } else {
                        if (!up.overwrite) r = r + beta * M::load(q, lanes);
                        if (bias) r = r + bias_v[v];
                        if (up.relu) r = V::relu(r);
                        M::store(r, q, lanes);
                    }
                }
            }
            return;
        }
    }
    T* dst = c;
    std::size_t ld = ldc;
    if (!full) {  // edge tile: work on a local copy of the valid corner
        dst = tile;
        ld = nr;
        std::memset(tile, 0, sizeof(tile));
        if (!up.overwrite)
            for (std::size_t i = 0; i < h; ++i)
                for (std::size_t j = 0; j < w; ++j) tile[i * nr + j] = c[i * ldc + j];
    }
#pragma GCC unroll 16
    for (std::size_t i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < nv; ++v) {
            T* q = dst + i * ld + v * vw;
            VT r = alpha * acc[i][v];
            if (!up.overwrite) r = r + beta * V::load(q);
            if (bias) r = r + bias_v[v];
            if (up.relu) r = V::relu(r);
            V::store(r, q);
        }
    if (!full)
        for (std::size_t i = 0; i < h; ++i)
            for (std::size_t j = 0; j < w; ++j) c[i * ldc + j] = tile[i * nr + j];
}

/// An h x w tile (h <= MR, w <= NR) on the narrowest micro-kernel instance that covers it: a full
/// tile on the full kernel; with AVX-512's 12 x 32 tile, an edge tile on 4 or 8 rows and 16
/// columns, so that it (a layer of 784 features leaves one 16 columns wide, a batch of 128 rows
/// one of 8 rows) does not run FMAs on padding. The values are those of the full kernel (same
/// FMAs per element, in the same order).
template <class T>
void fitted_micro_kernel(std::size_t kc, const T* __restrict a, std::size_t as, const T* __restrict b, std::size_t bs, T* c, std::size_t ldc,
                       std::size_t h, std::size_t w, const Update<T>& up) noexcept {
    using Bl = Blocking<T>;
    constexpr std::size_t vw = Vec<T>::width;
    if constexpr (Bl::mr == 12 && Bl::nv == 2 && vw > 1) {
        if (w <= vw) {
            if (h <= 4) return micro_kernel<T, 4, 1>(kc, a, as, b, bs, c, ldc, h, w, up);
            if (h <= 8) return micro_kernel<T, 8, 1>(kc, a, as, b, bs, c, ldc, h, w, up);
            return micro_kernel<T, 12, 1>(kc, a, as, b, bs, c, ldc, h, w, up);
        }
        if (h <= 4) return micro_kernel<T, 4, 2>(kc, a, as, b, bs, c, ldc, h, w, up);
        if (h <= 8) return micro_kernel<T, 8, 2>(kc, a, as, b, bs, c, ldc, h, w, up);
    }
    micro_kernel<T>(kc, a, as, b, bs, c, ldc, h, w, up);
}

/// The tasks of a threaded product over `panels` panels of C, shrinking towards the end (guided
/// self-scheduling): task i takes max(min_panels, ceil(remaining / (2 threads))) panels. The
/// first tasks are long, so there are few; the last are short, so when one core runs slower than
/// the other (this machine's cores often differ by 10-30% for seconds at a time), the faster one
/// takes more of the end and neither waits long for the other. Which panels a task takes changes
/// no arithmetic: each element of C is computed whole by one task.
struct GuidedTasks {
    std::size_t panels, threads, min_panels;
    std::size_t count() const noexcept {
        std::size_t n = 0;
        for (std::size_t begin = 0; begin < panels; ++n) begin += take(panels - begin);
        return n;
    }
    /// First panel and panel count of task i (i < count()).
    std::pair<std::size_t, std::size_t> task(std::size_t i) const noexcept {
        std::size_t begin = 0;
        for (; i > 0; --i) begin += take(panels - begin);
        return {begin, std::min(panels - begin, take(panels - begin))};
    }

private:
    std::size_t take(std::size_t remaining) const noexcept {
        return std::max(min_panels, (remaining + 2 * threads - 1) / (2 * threads));
    }
};

/// The fewest panels of `width` columns of an m x n x k product worth a task of their own: about
/// 4 MFLOP (~25 us here), so that a task's start (a lease, an atomic) stays well under 1% of it.
inline std::size_t min_task_panels(std::size_t m, std::size_t k, std::size_t width) noexcept {
    const double panel_flops = 2.0 * double(m) * double(k) * double(width);
    return std::max<std::size_t>(1, static_cast<std::size_t>(4e6 / panel_flops + 0.999));
}

/// The fixed cut of k into blocks of at most kc_max (a function of k only: see the file comment).
template <class T>
struct KBlocks {
    std::size_t count, size;
    explicit KBlocks(std::size_t k) noexcept {
        constexpr std::size_t kc_max = Blocking<T>::kc_max;
        count = (k + kc_max - 1) / kc_max;
        size = (k + count - 1) / count;
    }
};

/// Whether a panel of op(B) (kc rows of NR values at a row stride of ldb) can be read in place
/// from L1: rows whose stride is a multiple of a large power of two (256 floats: a layer of 256 or
/// 512 features) all fall into a few of L1's 64 sets (4 KiB apart repeat) and evict each other;
/// such a B is packed instead (measured: fc2's weight gradient, ldb = 512, went from 96 to 146 GFLOP/s, 1 thread).
template <class T>
constexpr bool b_in_place_ok(std::size_t ldb, std::size_t kc) noexcept {
    const std::size_t bytes = ldb * sizeof(T);
    std::size_t g = 4096;  // gcd(bytes, 4096): the period of the set pattern
    while (g > 64 && bytes % g != 0) g /= 2;
    const std::size_t positions = 4096 / g;  // distinct set offsets of the rows (2 lines each)
    return positions * 2 * 12 >= 2 * 2 * kc;  // the panel's 2 kc lines fit in half of the ways they can use
}

/// The order of the micro-tiles of a block: down each column of tiles (the B panel stays in L1,
/// the A panels come from L2), or, for a short k block and a large block of C, along each row of
/// tiles (the A panel stays in L1, the B panels come from L2). With a short k, C's own traffic
/// (kc FMAs per element read or written) dominates, and rows of tiles write C in long runs of
/// consecutive lines. Measured (benchmarks/gemm_ab.sh, C not in L2 as in a training step, 1 thread):
/// the weight gradients at batch 32 7-17% faster, at batch 128 3-7%; a 100x200x75 product
/// (80 KB of C) 2-10% slower, hence the size condition.
inline constexpr std::size_t row_order_max_k = 128;
inline constexpr std::size_t row_order_min_c_bytes = 256 * 1024;

/// C[i_begin:i_end, j_begin:j_end] on the calling thread (the bounds are multiples of MR and NR
/// but for the last block). `shared_a`, when not null, holds all of op(A) already packed by
/// the caller (then i_begin must be 0): the tasks of a split along n share it.
/// op(B) without trans_b (x in g^T x, W in g W: NR contiguous values per k step) is not packed
/// when the tiles are walked down columns: the micro-kernel reads its full panels in place with
/// B's row stride (a B panel serves all the A panels of a block from L1 either way, and a short m
/// or k leaves little to amortize a copy on); only a panel cut by the block's edge is packed
/// (zero-padded), so nothing past B is read. Walked along rows, B is packed (see rows_first).
/// op(A) is always packed: read in place, its panels of a power-of-two row stride (a weight
/// gradient's g^T, lda = out) fall into two L1 sets and were measured 20% slower.
template <class T>
void gemm_block(bool trans_a, bool trans_b, std::size_t i_begin, std::size_t i_end, std::size_t j_begin, std::size_t j_end, std::size_t k,
                T alpha, const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc, TaskBuffers<T>& buffers,
                const T* shared_a = nullptr, const Epilogue<T>& ep = {}) noexcept {
    using Bl = Blocking<T>;
    constexpr std::size_t mr = Bl::mr, nr = Bl::nr;
    const KBlocks<T> kb(k);
    // Whether blocks are walked along rows of tiles (decided once, by the largest block). Those
    // stream B's panels from L2: packed, they are contiguous (measured: dW 3-14% faster than read
    // in place with ldb).
    const bool rows_first = kb.size <= row_order_max_k &&
                            std::min(Bl::mc_max, i_end - i_begin) * std::min(Bl::nc_max, j_end - j_begin) * sizeof(T) >= row_order_min_c_bytes;
    const bool direct_b = !trans_b && !rows_first && b_in_place_ok<T>(ldb, kb.size);
    T* bpack = buffers.b.get(Bl::kc_max * Bl::nc_max);  // allocated at this size already (TaskBuffers)
    T* apack = shared_a ? nullptr : buffers.a.get(Bl::kc_max * Bl::mc_max);
    const std::size_t m_pad = (i_end + mr - 1) / mr * mr;  // rows of shared_a per k block
    for (std::size_t jc = j_begin; jc < j_end; jc += Bl::nc_max) {
        const std::size_t nc = std::min(Bl::nc_max, j_end - jc);
        const std::size_t nc_full = nc / nr * nr;  // columns in full panels
        for (std::size_t blk = 0; blk < kb.count; ++blk) {
            const std::size_t pc = blk * kb.size, kc = std::min(kb.size, k - pc);
            const bool last = blk + 1 == kb.count;
            Update<T> up{alpha, blk == 0 ? beta : T(1), blk == 0 && beta == T(0), nullptr, last && ep.relu};
            if (!direct_b) pack_b(trans_b, b, ldb, pc, kc, jc, nc, bpack);
            else if (nc_full < nc) pack_b(trans_b, b, ldb, pc, kc, jc + nc_full, nc - nc_full, bpack);  // the edge panel
            for (std::size_t ic = i_begin; ic < i_end; ic += Bl::mc_max) {
                const std::size_t mc = std::min(Bl::mc_max, i_end - ic);
                const T* ablock = shared_a ? shared_a + blk * kb.size * m_pad + ic * kc : apack;
                if (!shared_a) pack_a(trans_a, a, lda, ic, mc, pc, kc, apack);
                auto tile = [&](std::size_t ir, std::size_t jr) {
                    up.bias = last && ep.bias ? ep.bias + jc + jr : nullptr;
                    const bool b_in_place = direct_b && jr < nc_full;
                    const T* bp = b_in_place ? b + pc * ldb + jc + jr : bpack + (direct_b ? 0 : jr * kc);
                    fitted_micro_kernel<T>(kc, ablock + ir * kc, mr, bp, b_in_place ? ldb : nr, c + (ic + ir) * ldc + jc + jr, ldc,
                                           std::min(mr, mc - ir), std::min(nr, nc - jr), up);
                };
                if (rows_first && mc * nc * sizeof(T) >= row_order_min_c_bytes) {  // a short last block of rows: down columns
                    for (std::size_t ir = 0; ir < mc; ir += mr)
                        for (std::size_t jr = 0; jr < nc; jr += nr) tile(ir, jr);
                } else {
                    for (std::size_t jr = 0; jr < nc; jr += nr)
                        for (std::size_t ir = 0; ir < mc; ir += mr) tile(ir, jr);
                }
            }
        }
    }
}

#if SFT_KERNELS_SIMD && defined(__AVX512F__)
/// Row stride of gemm_block_ct's copy of a partial panel of rows.
inline constexpr std::size_t ct_row_stride = Blocking<float>::kc_max;

/// The micro-kernel of the transposed problem C^T = op(B)^T op(A)^T (float, AVX-512): acc[12 x 32]
/// = sum over kc steps p of (row r of a: a[r * ks + p], broadcast) x (the 32 values of
/// the packed panel b at b + 32 p). acc[r][q] belongs to C(q, r): the tile is transposed in
/// registers (16 x 16 at a time), then the hj (<= 12) valid values of each of the wi (<= 32) valid
/// rows of C are updated as in micro_kernel, with the bias of C's columns (up.bias, at the tile's
/// first column) along the lanes. An edge panel of rows (hj <= 4 or 8) runs the instance of that
/// height (MR), with the same FMAs per element.
template <std::size_t MR = 12>
void micro_kernel_ct(std::size_t kc, const float* __restrict a, std::size_t ks, const float* __restrict b, float* c, std::size_t ldc,
                     std::size_t hj, std::size_t wi, const Update<float>& up) noexcept {
    constexpr std::size_t mr = MR;
    for (std::size_t q = 0; q < wi; ++q) __builtin_prefetch(c + q * ldc, 1, 3);
    __m512 acc[mr][2];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 4  // as in micro_kernel
    for (std::size_t p = 0; p < kc; ++p, ++a, b += 32) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
        for (std::size_t r = 0; r < mr; ++r) {
            const __m512 av = _mm512_set1_ps(a[r * ks]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << hj) - 1u);
    const __m512 alpha = _mm512_set1_ps(up.alpha), beta = _mm512_set1_ps(up.beta), zero = _mm512_setzero_ps();
    const __m512 bias = up.bias ? _mm512_maskz_loadu_ps(mask, up.bias) : zero;
    for (std::size_t v = 0; v < 2; ++v) {
        if (16 * v >= wi) break;
        __m512 rows[16], cols[16];
        for (std::size_t r = 0; r < 16; ++r) rows[r] = r < mr ? acc[r][v] : zero;
        transpose16_regs(rows, cols);
        for (std::size_t q = 0; q < 16 && 16 * v + q < wi; ++q) {
            float* dst = c + (16 * v + q) * ldc;
            __m512 x = _mm512_mul_ps(alpha, cols[q]);
            if (!up.overwrite) x = _mm512_add_ps(x, _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(mask, dst)));
            if (up.bias) x = _mm512_add_ps(x, bias);
            if (up.relu) x = _mm512_max_ps(zero, x);
            _mm512_mask_storeu_ps(dst, mask, x);
        }
    }
}

/// C[:, j_begin:j_end] (all m rows) for trans_b && !trans_a (a linear layer's x W^T) computed as
/// C^T = B op(A)^T: the rows of B (W) are the broadcast operand, read in place 12 at a time (no
/// packing of the large operand: measured 15-60% faster than transposing W into panels, and 10%
/// faster than copying its rows), and op(A)^T (x^T, the small one) is the vector
/// operand, packed beforehand by the caller into `bt` (per k block: kb.size * m_pad values, panels
/// of 32 columns as pack_b lays them out). j_begin is a multiple of 12.
inline void gemm_block_ct(std::size_t m, std::size_t j_begin, std::size_t j_end, std::size_t k, float alpha, const float* b, std::size_t ldb,
                          float beta, float* c, std::size_t ldc, const float* bt, const Epilogue<float>& ep, TaskBuffers<float>& buffers) noexcept {
    constexpr std::size_t mr = 12, nr = 32, ks = ct_row_stride;
    const KBlocks<float> kb(k);
    const std::size_t m_pad = (m + nr - 1) / nr * nr;
    const std::size_t j_full = j_begin + (j_end - j_begin) / mr * mr;  // rows in full panels: read in place
    static_assert(mr * ks <= Blocking<float>::kc_max * Blocking<float>::mc_max);
    float* edge = buffers.a.get(Blocking<float>::kc_max * Blocking<float>::mc_max);  // allocated at this size already
    for (std::size_t blk = 0; blk < kb.count; ++blk) {
        const std::size_t pc = blk * kb.size, kc = std::min(kb.size, k - pc);
        const bool last = blk + 1 == kb.count;
        Update<float> up{alpha, blk == 0 ? beta : 1.0f, blk == 0 && beta == 0.0f, nullptr, last && ep.relu};
        const float* bblock = bt + blk * kb.size * m_pad;
        if (j_full < j_end)  // the last, partial panel of rows, zero-padded
            for (std::size_t r = 0; r < mr; ++r) {
                if (j_full + r < j_end) std::memcpy(edge + r * ks, b + (j_full + r) * ldb + pc, kc * sizeof(float));
                else std::memset(edge + r * ks, 0, kc * sizeof(float));
            }
        for (std::size_t ic = 0; ic < m; ic += nr)  // one panel of op(A)^T in L1 against all the rows
            for (std::size_t jc = j_begin; jc < j_end; jc += mr) {
                up.bias = last && ep.bias ? ep.bias + jc : nullptr;
                const bool in_place = jc < j_full;
                const float* rows = in_place ? b + jc * ldb + pc : edge;
                const std::size_t rs = in_place ? ldb : ks, hj = std::min(mr, j_end - jc), wi = std::min(nr, m - ic);
                if (hj <= 4) micro_kernel_ct<4>(kc, rows, rs, bblock + ic * kc, c + ic * ldc + jc, ldc, hj, wi, up);
                else if (hj <= 8) micro_kernel_ct<8>(kc, rows, rs, bblock + ic * kc, c + ic * ldc + jc, ldc, hj, wi, up);
                else micro_kernel_ct<12>(kc, rows, rs, bblock + ic * kc, c + ic * ldc + jc, ldc, hj, wi, up);
            }
    }
}
inline constexpr bool has_ct = true;
#else
inline constexpr bool has_ct = false;
inline void gemm_block_ct(std::size_t, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t, float, float*, std::size_t,
                          const float*, const Epilogue<float>&, TaskBuffers<float>&) noexcept {}
#endif

}  // namespace gemm_detail

/// C = alpha * op(A) op(B) + beta * C on row-major matrices with leading dimensions lda, ldb, ldc:
/// the same contract as kernels::gemm. op(A) is [m, k]: A is stored [m, k], or [k, m] when
/// trans_a. op(B) is [k, n]: B is stored [k, n], or [n, k] when trans_b. beta == 0 ignores C's
/// previous contents (NaNs included). Runs on sft's thread pool when the product is large
/// enough; the result does not depend on the number of threads.
/// `ep` is applied to every element of C after the product: C = act(alpha op(A) op(B) + beta C + bias[j]).
template <class T>
void gemm_packed(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
                 const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc, const gemm_detail::Epilogue<T>& ep = {}) noexcept {
    using Bl = gemm_detail::Blocking<T>;
    constexpr std::size_t mr = Bl::mr, nr = Bl::nr;
    if (m == 0 || n == 0) return;
    if (k == 0) {  // C = ep(beta C)
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                T x = beta == T(0) ? T(0) : beta * c[i * ldc + j];
                if (ep.bias) x += ep.bias[j];
                if (ep.relu && x < T(0)) x = T(0);
                c[i * ldc + j] = x;
            }
        return;
    }
    const std::size_t m_panels = (m + mr - 1) / mr, n_panels = (n + nr - 1) / nr;
    auto& pool = ::sft::detail::ThreadPool::instance();
    // Below ~2 MFLOP a thread's wake-up and its own packing cost more than they save.
    const double flops = 2.0 * double(m) * double(n) * double(k);
    std::size_t tasks = flops < 2e6 ? 1 : pool.num_threads();
    const bool in_task = ::sft::detail::ThreadPool::in_task();
    const bool serial = tasks <= 1 || in_task;
    // The calling thread's own buffers, touched (and so created) only when used: not in a task.
    const auto local = []() -> gemm_detail::ThreadBuffers<T>& { return gemm_detail::ThreadBuffers<T>::local(); };
    // A product inside a pool task (Conv2d's) runs serially on buffers leased from the pool's
    // sets, reserved for every thread at the first such product, rather than on the thread's own:
    // a pool thread that runs its first task late must not allocate then.
    if (!serial || in_task) gemm_detail::TaskBufferPool<T>::instance().reserve((serial ? pool.num_threads() : tasks) + 1);
    std::optional<gemm_detail::TaskLease<T>> in_task_lease;
    if (in_task) in_task_lease.emplace();
    gemm_detail::TaskBuffers<T>& serial_buffers = in_task ? **in_task_lease : local().task;
    if constexpr (std::is_same_v<T, float> && gemm_detail::has_ct && Bl::mr == 12 && Bl::nr == 32) {
        const gemm_detail::KBlocks<T> kb(k);
        const std::size_t m_pad = (m + nr - 1) / nr * nr, i_panels = m_pad / nr, j_panels = (n + mr - 1) / mr;
        const std::size_t bt_size = kb.count * kb.size * m_pad;
        const bool fits_lease = bt_size <= Bl::kc_max * Bl::nc_max;  // a leased set's B buffer holds all of x^T
        // A small product whose C has few columns (a classifier head: n = 10) also runs transposed
        // when that pads less: C's columns go to 12-row panels instead of 32-wide ones (fc3 of the
        // reference MLP, 128 x 10 x 256: 37 us -> 14 us at 1 thread). The rule depends on the shape
        // only (below 2 MFLOP a product is never threaded): results do not depend on the thread count.
        const bool small_n_pads_less = flops < 2e6 && fits_lease && m_pad * j_panels * mr < m_panels * mr * n_panels * nr;
        if (trans_b && !trans_a && (m <= n || small_n_pads_less)) {
            // x W^T: computed as (W x^T)^T, so that only x (the smaller operand) is transposed in
            // packing, then tasks of whole 12-row panels of W (columns of C).
            auto pack = [&](std::size_t t, T* bt) {  // x^T's panel t % i_panels of k block t / i_panels
                const std::size_t blk = t / i_panels, i0 = (t % i_panels) * nr;
                const std::size_t pc = blk * kb.size, kc = std::min(kb.size, k - pc);
                gemm_detail::pack_b(true, a, lda, pc, kc, i0, std::min(nr, m - i0), bt + blk * kb.size * m_pad + i0 * kc);
            };
            auto pack_all = [&](T* bt) {
                for (std::size_t t = 0; t < kb.count * i_panels; ++t) pack(t, bt);
            };
            if (serial) {
                // In a task (Conv2d's products), x^T goes into the leased set's B buffer when it fits.
                T* bt = in_task && fits_lease ? serial_buffers.b.get(bt_size) : local().shared.get(bt_size);
                pack_all(bt);
                gemm_detail::gemm_block_ct(m, 0, n, k, alpha, b, ldb, beta, c, ldc, bt, ep, serial_buffers);
                return;
            }
            const gemm_detail::GuidedTasks cut{j_panels, tasks, gemm_detail::min_task_panels(m, k, mr)};
            if (fits_lease && tasks <= gemm_detail::max_own_slots) {
                // Each thread packs all of x^T (34 us for fc1 at 1 thread) into its own leased set.
                // benchmarks/RESULTS.md has the A/B against a shared packing job.
                gemm_detail::run_own_packed<T>(
                    pool, cut.count(), [&](gemm_detail::TaskBuffers<T>& set) { pack_all(set.b.get(bt_size)); },
                    [&](std::size_t t, gemm_detail::TaskBuffers<T>& set) {
                        const auto [p0, pn] = cut.task(t);
                        const std::size_t j0 = p0 * mr, j1 = std::min(n, (p0 + pn) * mr);
                        gemm_detail::gemm_block_ct(m, j0, j1, k, alpha, b, ldb, beta, c, ldc, set.b.get(bt_size), ep, set);
                    });
                return;
            }
            // Otherwise x^T is packed once for all tasks, in parallel, into the caller's buffer.
            T* bt = local().shared.get(bt_size);
            pool.run(kb.count * i_panels, [&](std::size_t t) { pack(t, bt); });
            pool.run(cut.count(), [&](std::size_t t) {
                const auto [p0, pn] = cut.task(t);
                const std::size_t j0 = p0 * mr, j1 = std::min(n, (p0 + pn) * mr);
                gemm_detail::TaskLease<T> lease;
                gemm_detail::gemm_block_ct(m, j0, j1, k, alpha, b, ldb, beta, c, ldc, bt, ep, *lease);
            });
            return;
        }
    }
    if (serial) {
        gemm_detail::gemm_block(trans_a, trans_b, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc, serial_buffers, static_cast<const T*>(nullptr), ep);
        return;
    }
    if (m * k <= k * n && n_panels >= 2) {
        // Split along n into guided tasks (a thread slowed down by other processes is made up for
        // by the others: the pool hands tasks out dynamically); op(A), the smaller operand, is
        // packed whole for them, by each thread for itself or else once by all.
        const gemm_detail::KBlocks<T> kb(k);
        const std::size_t m_pad = m_panels * mr, a_size = kb.count * kb.size * m_pad;
        const gemm_detail::GuidedTasks cut{n_panels, tasks, gemm_detail::min_task_panels(m, k, nr)};
        // Each thread packs all of op(A) itself (as x W^T packs x^T above) into the end of its
        // leased set's B buffer, when it fits there beside the B panels of the widest task (the first).
        const std::size_t b_cap = Bl::kc_max * Bl::nc_max;
        const std::size_t widest = std::min(Bl::nc_max, cut.task(0).second * nr);
        if (a_size + kb.size * widest <= b_cap && tasks <= gemm_detail::max_own_slots) {
            auto own_a = [&](gemm_detail::TaskBuffers<T>& set) { return set.b.get(b_cap) + (b_cap - a_size); };
            gemm_detail::run_own_packed<T>(
                pool, cut.count(),
                [&](gemm_detail::TaskBuffers<T>& set) {
                    T* dst = own_a(set);
                    for (std::size_t blk = 0; blk < kb.count; ++blk) {
                        const std::size_t pc = blk * kb.size;
                        gemm_detail::pack_a(trans_a, a, lda, 0, m, pc, std::min(kb.size, k - pc), dst + blk * kb.size * m_pad);
                    }
                },
                [&](std::size_t t, gemm_detail::TaskBuffers<T>& set) {
                    const auto [p0, pn] = cut.task(t);
                    const std::size_t j0 = p0 * nr, j1 = std::min(n, (p0 + pn) * nr);
                    gemm_detail::gemm_block(trans_a, trans_b, 0, m, j0, j1, k, alpha, a, lda, b, ldb, beta, c, ldc, set,
                                            static_cast<const T*>(own_a(set)), ep);
                });
            return;
        }
        // Otherwise op(A) is packed once for all tasks, in parallel, into the caller's buffer.
        T* shared_a = local().shared.get(a_size);
        const std::size_t a_chunk = 4;  // panels per packing task
        const std::size_t a_chunks = (m_panels + a_chunk - 1) / a_chunk;
        pool.run(kb.count * a_chunks, [&](std::size_t t) {
            const std::size_t blk = t / a_chunks, i0 = (t % a_chunks) * a_chunk * mr, rows = std::min(a_chunk * mr, m - i0);
            const std::size_t pc = blk * kb.size, kc = std::min(kb.size, k - pc);
            gemm_detail::pack_a(trans_a, a, lda, i0, rows, pc, kc, shared_a + blk * kb.size * m_pad + i0 * kc);
        });
        pool.run(cut.count(), [&](std::size_t t) {
            const auto [p0, pn] = cut.task(t);
            const std::size_t j0 = p0 * nr, j1 = std::min(n, (p0 + pn) * nr);
            gemm_detail::TaskLease<T> lease;
            gemm_detail::gemm_block(trans_a, trans_b, 0, m, j0, j1, k, alpha, a, lda, b, ldb, beta, c, ldc, *lease, shared_a, ep);
        });
        return;
    }
    // Split along m: every task packs op(B) (the smaller operand here) for its own rows.
    const std::size_t tm = std::min(tasks, m_panels);
    const std::size_t pm = (m_panels + tm - 1) / tm;  // panels per task
    pool.run(tm, [&](std::size_t t) {
        const std::size_t i0 = std::min(m, t * pm * mr), i1 = std::min(m, (t + 1) * pm * mr);
        if (i0 >= i1) return;
        gemm_detail::TaskLease<T> lease;
        gemm_detail::gemm_block(trans_a, trans_b, i0, i1, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc, *lease,
                                static_cast<const T*>(nullptr), ep);
    });
}

}  // namespace sft::kernels
