// TensorDataset, subset and DataLoader: shape checks, every sample exactly once per epoch,
// seeded reproducible shuffling, drop_last, and no copy beyond one reused batch buffer.
#include <sft/data/dataset.hpp>
#include <sft/data/loader.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace {

// x[i] = [i, 100 + i, 200 + i] so that every row says which sample it is; y[i] = i % 3.
sft::data::TensorDataset<float> numbered(std::size_t n) {
    sft::Tensor<float> x({n, 3});
    sft::Tensor<std::int64_t> y({n});
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < 3; ++j) x(i, j) = static_cast<float>(100 * j + i);
        y[i] = static_cast<std::int64_t>(i % 3);
    }
    return {x, y};
}

// Checks that every batch row is intact (its 3 values and label belong to one sample) and returns
// the sample ids in the order served.
std::vector<std::size_t> served(sft::data::DataLoader<float>& loader) {
    std::vector<std::size_t> ids;
    for (const auto& b : loader) {
        REQUIRE(b.x.shape()[0] == b.y.numel());
        for (std::size_t r = 0; r < b.size(); ++r) {
            const auto id = static_cast<std::size_t>(b.x(r, 0));
            CHECK(b.x(r, 1) == static_cast<float>(100 + id));
            CHECK(b.x(r, 2) == static_cast<float>(200 + id));
            CHECK(b.y[r] == static_cast<std::int64_t>(id % 3));
            ids.push_back(id);
        }
    }
    return ids;
}

}  // namespace

TEST_CASE("TensorDataset wraps x [N, ...] and y [N] without copying", "[data][dataset]") {
    auto d = numbered(10);
    CHECK(d.size() == 10);
    CHECK(d.sample_numel() == 3);
    CHECK(d.batch_shape(4) == sft::Shape({4, 3}));
    CHECK(d.class_counts() == std::vector<std::size_t>{4, 3, 3});
    sft::Tensor<float> x({4, 2, 2});
    sft::Tensor<std::int64_t> y({4});
    sft::data::TensorDataset<float> shared(x, y);
    CHECK(shared.x().is_same(x));
    CHECK(shared.y().is_same(y));
}

TEST_CASE("TensorDataset: an N mismatch throws naming both shapes", "[data][dataset]") {
    sft::Tensor<float> x({5, 784});
    sft::Tensor<std::int64_t> y({4});
    try {
        sft::data::TensorDataset<float> d(x, y);
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::shape);
        CHECK_THAT(e.what(), Catch::Contains("[5, 784]") && Catch::Contains("[4]"));
    }
    CHECK_THROWS_AS(sft::data::TensorDataset<float>(x, sft::Tensor<std::int64_t>({5, 1})), sft::Error);
}

TEST_CASE("subset gathers rows in the order given and checks indices", "[data][dataset]") {
    auto d = numbered(6);
    auto s = sft::data::subset(d, {4, 0, 4});
    REQUIRE(s.size() == 3);
    CHECK(s.x()(0, 0) == 4.0f);
    CHECK(s.x()(1, 2) == 200.0f);
    CHECK(s.x()(2, 1) == 104.0f);
    CHECK(s.y()[0] == 1);
    CHECK_FALSE(s.x().is_same(d.x()));
    CHECK_THROWS_WITH(sft::data::subset(d, {6}), Catch::Contains("index 6") && Catch::Contains("6 samples"));
}

TEST_CASE("DataLoader serves every sample exactly once per epoch", "[data][loader]") {
    for (bool shuffle : {false, true})
        for (std::size_t bs : {1u, 7u, 10u, 64u}) {
            CAPTURE(shuffle, bs);
            sft::data::DataLoader<float> loader(numbered(50), sft::data::DataLoaderOptions().batch_size(bs).shuffle(shuffle).seed(3));
            CHECK(loader.num_batches() == (50 + bs - 1) / bs);
            for (int epoch = 0; epoch < 3; ++epoch) {
                const auto ids = served(loader);
                REQUIRE(ids.size() == 50);
                CHECK(std::set<std::size_t>(ids.begin(), ids.end()).size() == 50);
            }
        }
}

TEST_CASE("DataLoader shuffling is seeded: same seed same epochs, new order each epoch", "[data][loader]") {
    auto opts = sft::data::DataLoaderOptions().batch_size(8).shuffle(true).seed(42);
    sft::data::DataLoader<float> a(numbered(40), opts), b(numbered(40), opts), c(numbered(40), opts.seed(43));
    const auto a1 = served(a), a2 = served(a);
    CHECK(a1 == served(b));
    CHECK(a2 == served(b));
    CHECK(a1 != a2);
    CHECK(a1 != served(c));
    std::vector<std::size_t> identity(40);
    for (std::size_t i = 0; i < 40; ++i) identity[i] = i;
    CHECK(a1 != identity);
}

TEST_CASE("DataLoader drop_last drops only the short tail", "[data][loader]") {
    sft::data::DataLoader<float> loader(numbered(23), sft::data::DataLoaderOptions().batch_size(5).shuffle(true).drop_last(true));
    CHECK(loader.num_batches() == 4);
    CHECK(loader.samples_per_epoch() == 20);
    const auto ids = served(loader);
    CHECK(ids.size() == 20);
    CHECK(std::set<std::size_t>(ids.begin(), ids.end()).size() == 20);
    sft::data::DataLoader<float> keep(numbered(23), sft::data::DataLoaderOptions().batch_size(5));
    CHECK(keep.num_batches() == 5);
    CHECK(keep.batch_size_at(4) == 3);
}

TEST_CASE("DataLoader copies at most one batch: views unshuffled, one reused buffer shuffled", "[data][loader]") {
    auto d = numbered(20);
    sft::data::DataLoader<float> plain(d, sft::data::DataLoaderOptions().batch_size(8));
    plain.start_epoch();
    sft::data::Batch<float> b;
    REQUIRE(plain.next(b));
    CHECK(b.x.data() == d.x().data());  // a view of rows [0, 8)
    REQUIRE(plain.next(b));
    CHECK(b.x.data() == d.x().data() + 8 * 3);

    sft::data::DataLoader<float> shuffled(d, sft::data::DataLoaderOptions().batch_size(8).shuffle(true));
    shuffled.start_epoch();
    REQUIRE(shuffled.next(b));
    const float* buffer = b.x.data();
    CHECK(buffer != d.x().data());
    REQUIRE(shuffled.next(b));
    CHECK(b.x.data() == buffer);  // the same buffer, refilled
    REQUIRE(shuffled.next(b));    // the short tail: a view of the same buffer
    CHECK(b.x.data() == buffer);
    CHECK(b.size() == 4);
    CHECK_FALSE(shuffled.next(b));
}

TEST_CASE("DataLoader rejects batch_size 0 and next() before start_epoch()", "[data][loader]") {
    CHECK_THROWS_AS(sft::data::DataLoader<float>(numbered(3), sft::data::DataLoaderOptions().batch_size(0)), sft::Error);
    sft::data::DataLoader<float> loader(numbered(3));
    sft::data::Batch<float> b;
    CHECK_THROWS_WITH(loader.next(b), Catch::Contains("start_epoch"));
}
