// train_val_split (stratified proportions, disjoint and complete, seeded), select_classes
// (filter and remap) and take_per_class (K per class, seeded).
#include <sft/data/split.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace {

// Unbalanced labels: class c has counts[c] samples; x[i, 0] = i identifies the sample.
sft::data::TensorDataset<double> labelled(const std::vector<std::size_t>& counts) {
    std::size_t n = 0;
    for (auto c : counts) n += c;
    sft::Tensor<double> x({n, 2});
    sft::Tensor<std::int64_t> y({n});
    std::size_t i = 0;
    // Interleave the classes so that a split taking a prefix would be visibly wrong.
    std::vector<std::size_t> left = counts;
    while (i < n)
        for (std::size_t c = 0; c < counts.size(); ++c)
            if (left[c]) {
                --left[c];
                x(i, 0) = static_cast<double>(i);
                x(i, 1) = static_cast<double>(c) * 10.0;
                y[i++] = static_cast<std::int64_t>(c);
            }
    return {x, y};
}

std::set<double> ids(const sft::data::TensorDataset<double>& d) {
    std::set<double> s;
    for (std::size_t i = 0; i < d.size(); ++i) s.insert(d.x()(i, 0));
    return s;
}

}  // namespace

TEST_CASE("train_val_split keeps each label's proportion", "[data][split]") {
    const std::vector<std::size_t> counts{100, 40, 10, 250};
    auto d = labelled(counts);
    auto split = sft::data::train_val_split(d, 0.2, 7);
    const auto tr = split.train.class_counts(), va = split.val.class_counts();
    REQUIRE(va.size() == counts.size());
    for (std::size_t c = 0; c < counts.size(); ++c) {
        CAPTURE(c);
        CHECK(va[c] == static_cast<std::size_t>(std::llround(counts[c] * 0.2)));
        CHECK(tr[c] + va[c] == counts[c]);
    }
    // Disjoint and complete, and each row still carries its own label.
    const auto a = ids(split.train), b = ids(split.val);
    CHECK(a.size() + b.size() == d.size());
    for (double v : b) CHECK(a.count(v) == 0);
    for (std::size_t i = 0; i < split.val.size(); ++i) CHECK(split.val.x()(i, 1) == 10.0 * static_cast<double>(split.val.y()[i]));
}

TEST_CASE("train_val_split is seeded and random within a label", "[data][split]") {
    auto d = labelled({50, 50});
    const auto s1 = sft::data::train_val_split(d, 0.3, 1), s2 = sft::data::train_val_split(d, 0.3, 1);
    const auto s3 = sft::data::train_val_split(d, 0.3, 2);
    CHECK(ids(s1.val) == ids(s2.val));
    CHECK(ids(s1.val) != ids(s3.val));
    // Not simply the first or last samples of each class.
    std::set<double> first;
    for (std::size_t i = 0; i < 30; ++i) first.insert(static_cast<double>(i));
    CHECK(ids(s1.val) != first);
}

TEST_CASE("train_val_split unstratified takes round(N * fraction)", "[data][split]") {
    auto d = labelled({33, 7});
    auto s = sft::data::train_val_split(d, 0.25, 0, /*stratified=*/false);
    CHECK(s.val.size() == 10);
    CHECK(s.train.size() == 30);
    CHECK_THROWS_WITH(sft::data::train_val_split(d, 1.0), Catch::Contains("val_fraction 1"));
    CHECK_THROWS_AS(sft::data::train_val_split(d, 0.0), sft::Error);
}

TEST_CASE("select_classes keeps the listed classes and remaps them by position", "[data][split]") {
    auto d = labelled({5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
    auto target = sft::data::select_classes(d, {1, 3, 6, 9});
    CHECK(target.class_counts() == std::vector<std::size_t>{6, 8, 11, 14});
    const std::int64_t original[] = {1, 3, 6, 9};
    for (std::size_t i = 0; i < target.size(); ++i) CHECK(target.x()(i, 1) == 10.0 * static_cast<double>(original[target.y()[i]]));
    auto source = sft::data::select_classes(d, {0, 2, 4, 5, 7, 8});
    CHECK(source.size() == 5 + 7 + 9 + 10 + 12 + 13);
    CHECK(source.class_counts().size() == 6);
    CHECK_THROWS_WITH(sft::data::select_classes(d, {1, 1}), Catch::Contains("twice"));
    CHECK_THROWS_WITH(sft::data::select_classes(d, {12}), Catch::Contains("class 12") && Catch::Contains("labels present"));
}

TEST_CASE("take_per_class takes K seeded samples of every label", "[data][split]") {
    auto d = labelled({20, 30, 25});
    auto k5 = sft::data::take_per_class(d, 5, 11);
    CHECK(k5.class_counts() == std::vector<std::size_t>{5, 5, 5});
    CHECK(ids(k5) == ids(sft::data::take_per_class(d, 5, 11)));
    CHECK(ids(k5) != ids(sft::data::take_per_class(d, 5, 12)));
    CHECK_THROWS_WITH(sft::data::take_per_class(d, 21), Catch::Contains("label 0 has 20 samples"));
}
