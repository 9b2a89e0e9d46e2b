/// @file split.hpp
/// Dataset helpers for fine-tuning: a seeded train/validation split stratified by label,
/// selecting a subset of classes with labels remapped to 0..k-1, and K samples per class.
/// Each returns new datasets holding copies of the chosen samples, in their original order.
#pragma once

#include <sft/data/dataset.hpp>
#include <sft/error.hpp>
#include <sft/tensor.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace sft::data {

namespace detail {
/// Indices of each label value, in increasing index order, labels in increasing order.
template <class T>
std::map<std::int64_t, std::vector<std::size_t>> indices_by_label(const TensorDataset<T>& data) {
    std::map<std::int64_t, std::vector<std::size_t>> by_label;
    for (std::size_t i = 0; i < data.size(); ++i) by_label[data.y()[i]].push_back(i);
    return by_label;
}

/// Fisher-Yates shuffle of v with rng.
inline void shuffle(std::vector<std::size_t>& v, Rng& rng) noexcept {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.randint(i)]);
}
}  // namespace detail

/// The two halves of a split.
template <class T>
struct Split {
    TensorDataset<T> train;
    TensorDataset<T> val;
};

/// Splits `data` into train and validation sets, the validation set taking `val_fraction` of
/// the samples. Stratified (default): within each label, round(count * val_fraction) samples
/// chosen at random (seeded sft::Rng) go to validation, so both halves keep the label
/// proportions, as sklearn's train_test_split(stratify=y); the validation size is therefore the
/// sum of the per-label roundings. Not stratified: round(N * val_fraction) samples at random.
/// Throws sft::Error (kind invalid_argument) unless 0 < val_fraction < 1.
template <class T>
Split<T> train_val_split(const TensorDataset<T>& data, double val_fraction, std::uint64_t seed = 0, bool stratified = true) {
    if (!(val_fraction > 0.0 && val_fraction < 1.0))
        throw Error(ErrorKind::invalid_argument, fmt::format("train_val_split: val_fraction {} must be in (0, 1)", val_fraction));
    Rng rng(seed);
    std::vector<std::size_t> train_idx, val_idx;
    auto take = [&](std::vector<std::size_t> idx) {
        const auto n_val = static_cast<std::size_t>(std::llround(static_cast<double>(idx.size()) * val_fraction));
        detail::shuffle(idx, rng);
        val_idx.insert(val_idx.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n_val));
        train_idx.insert(train_idx.end(), idx.begin() + static_cast<std::ptrdiff_t>(n_val), idx.end());
    };
    if (stratified) {
        for (auto& kv : detail::indices_by_label(data)) take(std::move(kv.second));
    } else {
        std::vector<std::size_t> all(data.size());
        for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
        take(std::move(all));
    }
    std::sort(train_idx.begin(), train_idx.end());
    std::sort(val_idx.begin(), val_idx.end());
    return {subset(data, train_idx), subset(data, val_idx)};
}

/// Keeps the samples whose label is one of `classes` and relabels them by position in that list:
/// select_classes(d, {1, 3, 6, 9}) maps 1 -> 0, 3 -> 1, 6 -> 2, 9 -> 3.
/// Throws sft::Error (kind invalid_argument) on an empty or repeated class list, (kind key) when a
/// listed class has no sample (the message lists the labels present).
template <class T>
TensorDataset<T> select_classes(const TensorDataset<T>& data, const std::vector<std::int64_t>& classes) {
    if (classes.empty()) throw Error(ErrorKind::invalid_argument, "select_classes: the class list is empty");
    std::map<std::int64_t, std::int64_t> remap;
    for (std::size_t k = 0; k < classes.size(); ++k)
        if (!remap.emplace(classes[k], static_cast<std::int64_t>(k)).second)
            throw Error(ErrorKind::invalid_argument, fmt::format("select_classes: class {} listed twice in {}", classes[k], classes));
    const auto by_label = detail::indices_by_label(data);
    std::vector<std::size_t> keep;
    for (std::int64_t c : classes) {
        auto it = by_label.find(c);
        if (it == by_label.end()) {
            std::vector<std::int64_t> present;
            for (auto& kv : by_label) present.push_back(kv.first);
            throw Error(ErrorKind::key, fmt::format("select_classes: class {} has no sample; labels present: {}", c, present));
        }
        keep.insert(keep.end(), it->second.begin(), it->second.end());
    }
    std::sort(keep.begin(), keep.end());
    TensorDataset<T> out = subset(data, keep);
    Tensor<std::int64_t> y = out.y();  // shares storage with out
    for (std::size_t i = 0; i < y.numel(); ++i) y[i] = remap.at(y[i]);
    return out;
}

/// Takes `k` samples of every label present, chosen at random (seeded sft::Rng), as the few-shot
/// sets of fine-tuning experiments; the result has k * (number of labels) samples.
/// Throws sft::Error (kind invalid_argument) on k = 0 or when a label has fewer than k samples
/// (the message names the label and its count).
template <class T>
TensorDataset<T> take_per_class(const TensorDataset<T>& data, std::size_t k, std::uint64_t seed = 0) {
    if (k == 0) throw Error(ErrorKind::invalid_argument, "take_per_class: k must be > 0");
    Rng rng(seed);
    std::vector<std::size_t> keep;
    for (auto& [label, idx] : detail::indices_by_label(data)) {
        if (idx.size() < k)
            throw Error(ErrorKind::invalid_argument,
                        fmt::format("take_per_class: label {} has {} samples, {} requested", label, idx.size(), k));
        detail::shuffle(idx, rng);
        keep.insert(keep.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k));
    }
    std::sort(keep.begin(), keep.end());
    return subset(data, keep);
}

}  // namespace sft::data
