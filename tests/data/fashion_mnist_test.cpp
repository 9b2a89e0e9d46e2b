// load_fashion_mnist on the files of the Debian package dataset-fashion-mnist (skipped with a
// warning when the package is absent), and its errors.
#include <sft/data/fashion_mnist.hpp>
#include <sft/data/split.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {
bool package_installed() {
    std::FILE* f = std::fopen((std::string(sft::data::fashion_mnist_default_dir) + "/t10k-labels-idx1-ubyte.gz").c_str(), "rb");
    if (f) std::fclose(f);
    return f != nullptr;
}
}  // namespace

TEST_CASE("load_fashion_mnist reads the test split: [10000, 1, 28, 28] in [0, 1], 1000 per class", "[data][fashion_mnist]") {
    if (!package_installed()) {
        WARN("dataset-fashion-mnist is not installed: skipping the real-file test");
        return;
    }
    auto test = sft::data::load_fashion_mnist<float>("test");
    REQUIRE(test.x().shape() == sft::Shape({10000, 1, 28, 28}));
    REQUIRE(test.y().shape() == sft::Shape({10000}));
    CHECK(test.class_counts() == std::vector<std::size_t>(10, 1000));
    float lo = 1, hi = 0;
    double sum = 0;
    for (float v : test.x()) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
    }
    CHECK(lo == 0.0f);
    CHECK(hi == 1.0f);
    // Fashion-MNIST's mean pixel is about 0.286 (torchvision's usual normalisation constant).
    CHECK(sum / static_cast<double>(test.x().numel()) == Approx(0.286).margin(0.005));
    // Every value is a multiple of 1/255.
    for (std::size_t i = 0; i < 2000; ++i) CHECK(std::abs(test.x()[i] * 255.0f - std::round(test.x()[i] * 255.0f)) < 1e-4f);

    // The examples' class subsets.
    auto source = sft::data::select_classes(test, {0, 2, 4, 5, 7, 8});
    auto target = sft::data::select_classes(test, {1, 3, 6, 9});
    CHECK(source.size() == 6000);
    CHECK(target.class_counts() == std::vector<std::size_t>(4, 1000));
    auto few = sft::data::take_per_class(target, 10, 1);
    CHECK(few.x().shape() == sft::Shape({40, 1, 28, 28}));
}

TEST_CASE("load_fashion_mnist reads the train split", "[data][fashion_mnist]") {
    if (!package_installed()) {
        WARN("dataset-fashion-mnist is not installed: skipping the real-file test");
        return;
    }
    auto train = sft::data::load_fashion_mnist<float>("train");
    CHECK(train.x().shape() == sft::Shape({60000, 1, 28, 28}));
    CHECK(train.class_counts() == std::vector<std::size_t>(10, 6000));
}

TEST_CASE("load_fashion_mnist errors name the split, the file and the package", "[data][fashion_mnist]") {
    CHECK_THROWS_WITH(sft::data::load_fashion_mnist<float>("validation"), Catch::Contains("'validation'"));
    try {
        sft::data::load_fashion_mnist<float>("train", "/nonexistent");
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::io);
        CHECK_THAT(e.what(), Catch::Contains("/nonexistent/train-images-idx3-ubyte.gz") && Catch::Contains("dataset-fashion-mnist"));
    }
}
