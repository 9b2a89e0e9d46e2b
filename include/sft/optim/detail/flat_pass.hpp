/// @file flat_pass.hpp
/// One threaded pass over many tensors as if they were one flat array: what the optimizers'
/// step() and zero_grad() and clip_grad_norm_ run on. The tensors ("items") are laid end to end in
/// a flat index space, each starting on a cache line of that space (so that a piece of a 64-byte
/// aligned tensor starts on a cache line of its storage too); the space is cut into chunks of a
/// size that depends on the total only, never on the thread count; each chunk is one task of
/// sft's pool and visits the pieces of the items it overlaps, in order. So a model's many small
/// tensors (biases, norms) share one task instead of costing a pool round-trip each, a large
/// tensor is spread over every thread, and a model below one chunk runs on the calling thread
/// without touching the pool. Internal: namespace sft::optim::detail.
#pragma once

#include <sft/detail/thread_pool.hpp>
#include <sft/tensor.hpp>

#include <algorithm>
#include <cstddef>

namespace sft::optim::detail {

/// At least this many elements per chunk: the pool's hand-out (an atomic increment, ~100 ns) is
/// then a small fraction of a chunk's work (16K AdamW elements move 448 KiB, ~10 us).
inline constexpr std::size_t flat_grain = std::size_t(1) << 14;
/// At most this many chunks per pass: several per thread even out threads slowed by other
/// processes, few enough that the per-chunk bookkeeping stays negligible.
inline constexpr std::size_t flat_max_chunks = 256;

/// The flat-space alignment of each item and chunk boundary, in elements of T: one cache line.
template <class T>
constexpr std::size_t flat_align() noexcept {
    return sft::detail::tensor_alignment / sizeof(T);
}

/// n rounded up to a multiple of a (a > 0).
constexpr std::size_t round_up(std::size_t n, std::size_t a) noexcept { return (n + a - 1) / a * a; }

/// The cut of a flat space of `total` elements into chunks of at least `grain` and at most
/// `max_chunks` chunks, the size a multiple of `align`: depends on its arguments only, never on
/// the thread count, so every element takes the same path whatever set_num_threads() says.
struct FlatCut {
    std::size_t chunks = 0;  ///< number of chunks (0 when total == 0)
    std::size_t size = 0;    ///< elements per chunk; the last one may be shorter

    FlatCut(std::size_t total, std::size_t grain, std::size_t max_chunks, std::size_t align) noexcept {
        if (total == 0) return;
        max_chunks = std::max<std::size_t>(max_chunks, 1);
        size = round_up(std::max({grain, (total + max_chunks - 1) / max_chunks, std::size_t(1)}), std::max<std::size_t>(align, 1));
        chunks = (total + size - 1) / size;
    }
    std::size_t begin(std::size_t c) const noexcept { return c * size; }
    std::size_t end(std::size_t c, std::size_t total) const noexcept { return std::min(total, (c + 1) * size); }
};

/// Calls piece(item, lo, hi) for each item of items[0, count) that overlaps the flat range [b, e),
/// in item order, with [lo, hi) the overlap in the item's own element indices (hi > lo). An item
/// is anything with `offset` (its first element in the flat space) and `size` (its elements);
/// items are sorted by offset and do not overlap. The first item is found by binary search.
template <class Item, class Piece>
void for_each_piece(Item* items, std::size_t count, std::size_t b, std::size_t e, Piece&& piece) noexcept {
    // The last item starting at or before b (items of size 0 share their offset with the next).
    Item* it = std::upper_bound(items, items + count, b, [](std::size_t x, const Item& item) { return x < item.offset; });
    if (it == items) return;  // cannot happen when items[0].offset == 0
    for (--it; it != items + count && it->offset < e; ++it) {
        const std::size_t lo = b > it->offset ? b - it->offset : 0;
        const std::size_t hi = std::min(it->size, e - it->offset);
        if (hi > lo) piece(*it, lo, hi);
    }
}

/// The whole pass: cuts [0, total) (FlatCut with flat_grain, flat_max_chunks and the alignment
/// `align`) and runs for_each_piece over every chunk on sft's pool. `piece` must not throw and
/// must touch only elements [lo, hi) of its item: chunks run concurrently.
template <class Item, class Piece>
void flat_pass(Item* items, std::size_t count, std::size_t total, std::size_t align, Piece&& piece) noexcept {
    const FlatCut cut(total, flat_grain, flat_max_chunks, align);
    sft::detail::ThreadPool::instance().run(cut.chunks, [&](std::size_t c) {
        for_each_piece(items, count, cut.begin(c), cut.end(c, total), piece);
    });
}

}  // namespace sft::optim::detail
