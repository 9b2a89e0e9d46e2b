// DataLoader buffer reuse: the shuffled loader refills its buffers only when nobody else holds
// them (a batch the user keeps is never overwritten), and the gather gives the same batches at 1
// and 2 threads. Allocation counts are checked in tests/train/allocation_test.cpp.
#include <sft/data/dataset.hpp>
#include <sft/data/loader.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

namespace {

// x[i] = [i, i + 0.5, i + 0.25, ...] (`width` values), y[i] = i % 7: every row says which sample it is.
sft::data::TensorDataset<float> numbered(std::size_t n, std::size_t width) {
    sft::Tensor<float> x({n, width});
    sft::Tensor<std::int64_t> y({n});
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < width; ++j) x(i, j) = static_cast<float>(i) + static_cast<float>(j % 4) * 0.25f;
        y[i] = static_cast<std::int64_t>(i % 7);
    }
    return {x, y};
}

// True when every row of the batch is intact: its values and label belong to the sample its first value names.
bool rows_intact(const sft::data::Batch<float>& b) {
    const std::size_t width = b.x.shape()[1];
    for (std::size_t r = 0; r < b.size(); ++r) {
        const float id = b.x(r, 0);
        for (std::size_t j = 0; j < width; ++j)
            if (b.x(r, j) != id + static_cast<float>(j % 4) * 0.25f) return false;
        if (b.y[r] != static_cast<std::int64_t>(id) % 7) return false;
    }
    return true;
}

// Restores the thread count a test changed.
struct ThreadsGuard {
    std::size_t saved = sft::get_num_threads();
    ~ThreadsGuard() { sft::set_num_threads(saved); }
};

}  // namespace

TEST_CASE("DataLoader never overwrites a batch the user keeps", "[data][loader]") {
    sft::data::DataLoader<float> loader(numbered(40, 3), sft::data::DataLoaderOptions().batch_size(8).shuffle(true).seed(5));
    std::vector<sft::data::Batch<float>> kept;
    std::vector<std::vector<float>> values;  // what each kept batch held when it was served
    const float* previous = nullptr;
    for (const auto& b : loader) {
        // The loader's own batch reuses the buffer unless the previous batch was kept.
        if (previous) {
            if (b.index % 2 == 1) CHECK(b.x.data() != previous);  // batch index-1 is kept: fresh buffer
            else CHECK(b.x.data() == previous);                   // batch index-1 was let go: refilled
        }
        previous = b.x.data();
        if (b.index % 2 == 0) {
            kept.push_back(b);  // keep batches 0, 2, 4 (copies of the handles, not the values)
            values.emplace_back(b.x.begin(), b.x.end());
        }
    }
    REQUIRE(kept.size() == 3);
    for (std::size_t k = 0; k < kept.size(); ++k) {
        CAPTURE(k);
        CHECK(std::vector<float>(kept[k].x.begin(), kept[k].x.end()) == values[k]);
        CHECK(rows_intact(kept[k]));
    }
    // A second epoch: the kept batches still hold their values.
    for (const auto& b : loader) CHECK(rows_intact(b));
    for (std::size_t k = 0; k < kept.size(); ++k) CHECK(std::vector<float>(kept[k].x.begin(), kept[k].x.end()) == values[k]);
}

TEST_CASE("DataLoader: keeping only a batch's x or y keeps that tensor intact", "[data][loader]") {
    sft::data::DataLoader<float> loader(numbered(24, 5), sft::data::DataLoaderOptions().batch_size(8).shuffle(true).seed(1));
    loader.start_epoch();
    sft::data::Batch<float> b;
    REQUIRE(loader.next(b));
    const sft::Tensor<std::int64_t> y0 = b.y;  // held, as a metric might hold labels
    const std::vector<std::int64_t> y0_values(y0.begin(), y0.end());
    const float* x0 = b.x.data();
    REQUIRE(loader.next(b));
    CHECK(b.x.data() == x0);            // x was let go: refilled in place
    CHECK(b.y.data() != y0.data());     // y is held: a fresh buffer
    CHECK(std::vector<std::int64_t>(y0.begin(), y0.end()) == y0_values);
    CHECK(rows_intact(b));
}

TEST_CASE("DataLoader gathers large batches on the thread pool with the same result at 1 and 2 threads", "[data][loader][threads]") {
    ThreadsGuard guard;
    // 300 rows of 784 floats: batches of 128 (400 KB, several gather tasks) and a tail of 44.
    const auto data = numbered(300, 784);
    auto epochs = [&](std::size_t threads) {
        sft::set_num_threads(threads);
        sft::data::DataLoader<float> loader(data, sft::data::DataLoaderOptions().batch_size(128).shuffle(true).seed(9));
        std::vector<std::vector<float>> xs;
        std::vector<std::vector<std::int64_t>> ys;
        for (int epoch = 0; epoch < 2; ++epoch)
            for (const auto& b : loader) {
                CHECK(rows_intact(b));
                xs.emplace_back(b.x.begin(), b.x.end());
                ys.emplace_back(b.y.begin(), b.y.end());
            }
        return std::make_pair(xs, ys);
    };
    const auto one = epochs(1);
    const auto two = epochs(2);
    REQUIRE(one.first.size() == 6);
    CHECK(one.first.back().size() == 44 * 784);
    CHECK(one.first == two.first);
    CHECK(one.second == two.second);
    // And subset, which gathers the same way.
    std::vector<std::size_t> idx(300);
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = (i * 37) % 300;
    sft::set_num_threads(2);
    const auto s = sft::data::subset(data, idx);
    for (std::size_t i = 0; i < idx.size(); ++i) {
        CHECK(s.x()(i, 0) == static_cast<float>(idx[i]));
        CHECK(s.x()(i, 783) == static_cast<float>(idx[i]) + 0.75f);
    }
}
