/// @file loader.hpp
/// sft::data::DataLoader<T>: batches of a TensorDataset, shuffled with a seeded sft::Rng at the
/// start of every epoch, as torch.utils.data.DataLoader(shuffle=True, generator=g, drop_last=...).
///
/// Memory: iterating allocates nothing in steady state. An unshuffled loader copies nothing: its
/// batches are views (Tensor::narrow) of the dataset. A shuffled loader gathers each batch (on
/// sft's thread pool when it is large) into two buffers, x [batch_size, ...] and y [batch_size],
/// that it keeps and refills batch after batch, and it reshuffles its one index vector in place.
/// It refills a buffer only when nobody else holds it (Tensor::use_count() is 1 once the batch
/// being replaced has let go): a batch you keep (a copy of the Batch or of its tensors, or an
/// input a layer still holds for backward) is never overwritten; the loader then gathers into a
/// fresh buffer, which it keeps from then on.
#pragma once

#include <sft/data/dataset.hpp>
#include <sft/error.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <utility>
#include <vector>

namespace sft::data {

/// Options of a DataLoader, in libtorch's builder style: DataLoaderOptions().batch_size(64).shuffle(true).
class DataLoaderOptions {
public:
    /// Samples per batch (default 32; > 0).
    DataLoaderOptions& batch_size(std::size_t v) noexcept { batch_size_ = v; return *this; }
    std::size_t batch_size() const noexcept { return batch_size_; }
    /// Draw a new permutation of the samples at the start of every epoch (default false).
    DataLoaderOptions& shuffle(bool v) noexcept { shuffle_ = v; return *this; }
    bool shuffle() const noexcept { return shuffle_; }
    /// Seed of the loader's own sft::Rng (default 0): the same seed gives the same epochs.
    DataLoaderOptions& seed(std::uint64_t v) noexcept { seed_ = v; return *this; }
    std::uint64_t seed() const noexcept { return seed_; }
    /// Drop the last batch when it is smaller than batch_size (default false).
    DataLoaderOptions& drop_last(bool v) noexcept { drop_last_ = v; return *this; }
    bool drop_last() const noexcept { return drop_last_; }

private:
    std::size_t batch_size_ = 32;
    bool shuffle_ = false;
    std::uint64_t seed_ = 0;
    bool drop_last_ = false;
};

/// One batch: inputs x [B, ...], labels y [B], its index in the epoch. Its tensors may share
/// storage with the loader's buffers; a copy kept past the next batch keeps its values (see the
/// file comment).
template <class T>
struct Batch {
    Tensor<T> x;
    Tensor<std::int64_t> y;
    std::size_t index = 0;
    /// Number of samples B.
    std::size_t size() const noexcept { return y.numel(); }
};

/// Iterates over a TensorDataset in batches. The dataset is held by handle (no copy) and must
/// not change size while the loader lives.
///
/// Two ways to iterate, both starting a new epoch (a new permutation when shuffling):
///   `for (const Batch<float>& b : loader) ...`   or   `loader.start_epoch(); while (loader.next(b)) ...`
template <class T>
class DataLoader {
public:
    /// Throws sft::Error (kind invalid_argument) on batch_size 0.
    DataLoader(TensorDataset<T> data, DataLoaderOptions options = {}) : data_(std::move(data)), options_(options), rng_(options.seed()) {
        if (options_.batch_size() == 0) throw Error(ErrorKind::invalid_argument, "DataLoader: batch_size must be > 0");
        order_.resize(data_.size());
        std::iota(order_.begin(), order_.end(), std::size_t(0));
    }

    const TensorDataset<T>& dataset() const noexcept { return data_; }
    const DataLoaderOptions& options() const noexcept { return options_; }

    /// Batches per epoch: ceil(N / batch_size), or floor with drop_last.
    std::size_t num_batches() const noexcept {
        const std::size_t n = data_.size(), b = options_.batch_size();
        return options_.drop_last() ? n / b : (n + b - 1) / b;
    }
    /// Samples in batch i of an epoch (i < num_batches()).
    std::size_t batch_size_at(std::size_t i) const noexcept {
        const std::size_t b = options_.batch_size();
        return std::min(b, data_.size() - i * b);
    }
    /// Samples seen per epoch (N, less the dropped tail with drop_last).
    std::size_t samples_per_epoch() const noexcept {
        return options_.drop_last() ? num_batches() * options_.batch_size() : data_.size();
    }

    /// Starts an epoch: the next call to next() gives batch 0. When shuffling, draws the epoch's
    /// permutation (Fisher-Yates with the loader's Rng: epoch k of a seed is the same on every run).
    void start_epoch() {
        if (options_.shuffle()) {
            for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng_.randint(i)]);
        }
        next_batch_ = 0;
        started_ = true;
    }

    /// Fills `batch` with the next batch of the epoch and returns true, or returns false at the
    /// end of the epoch. Throws sft::Error (kind state) if start_epoch() was not called.
    /// Allocates nothing when `batch` holds the previous batch and no one else does (see the
    /// file comment); otherwise the shuffled batch goes to a fresh buffer.
    bool next(Batch<T>& batch) {
        if (!started_) throw Error(ErrorKind::state, "DataLoader::next: call start_epoch() (or iterate with begin()) first");
        if (next_batch_ >= num_batches()) return false;
        const std::size_t i = next_batch_++;
        const std::size_t start = i * options_.batch_size();
        const std::size_t n = batch_size_at(i);
        batch.index = i;
        if (!options_.shuffle()) {
            // Consecutive rows: views of the dataset, no copy.
            batch.x = data_.x().narrow(start, n);
            batch.y = data_.y().narrow(start, n);
            return true;
        }
        // Let go of the previous batch first: if it was the only other holder of the buffers,
        // they are ours alone again and can be refilled.
        batch.x = Tensor<T>();
        batch.y = Tensor<std::int64_t>();
        if (buffer_x_.use_count() != 1) buffer_x_ = Tensor<T>::empty(data_.batch_shape(options_.batch_size()));
        if (buffer_y_.use_count() != 1) buffer_y_ = Tensor<std::int64_t>::empty(Shape{options_.batch_size()});
        gather_rows(data_, order_.data() + start, n, buffer_x_.data(), buffer_y_.data());
        batch.x = n == options_.batch_size() ? buffer_x_ : buffer_x_.narrow(0, n);
        batch.y = n == options_.batch_size() ? buffer_y_ : buffer_y_.narrow(0, n);
        return true;
    }

    /// The sample indices of the current epoch in the order they are served.
    const std::vector<std::size_t>& order() const noexcept { return order_; }

    /// Input iterator over one epoch's batches (for range-for).
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Batch<T>;
        using difference_type = std::ptrdiff_t;
        using pointer = const Batch<T>*;
        using reference = const Batch<T>&;

        iterator() = default;
        explicit iterator(DataLoader* loader) : loader_(loader) { advance(); }
        reference operator*() const noexcept { return batch_; }
        pointer operator->() const noexcept { return &batch_; }
        iterator& operator++() {
            advance();
            return *this;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.loader_ == b.loader_; }
        friend bool operator!=(const iterator& a, const iterator& b) noexcept { return !(a == b); }

    private:
        void advance() {
            if (loader_ && !loader_->next(batch_)) loader_ = nullptr;
        }
        DataLoader* loader_ = nullptr;
        Batch<T> batch_;
    };

    /// Starts a new epoch (see start_epoch()) and returns its first batch.
    iterator begin() {
        start_epoch();
        return iterator(this);
    }
    iterator end() noexcept { return iterator(); }

private:
    TensorDataset<T> data_;
    DataLoaderOptions options_;
    Rng rng_;
    std::vector<std::size_t> order_;
    Tensor<T> buffer_x_;
    Tensor<std::int64_t> buffer_y_;
    std::size_t next_batch_ = 0;
    bool started_ = false;
};

}  // namespace sft::data
