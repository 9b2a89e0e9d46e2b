// A steady-state training step allocates nothing (issue 3/5): counted by replacing the global
// operator new for this test binary (sft_test_train). The replacement only counts, then allocates
// as usual, so the other tests of the binary are unaffected; these tests read the counter's
// deltas around the steps they measure.
//
// Set SFT_ALLOC_TRACE=1 in the environment to print a backtrace (stderr) of every allocation made
// inside a measured window: `SFT_ALLOC_TRACE=1 sft_test_train "[allocation]" 2>&1 | c++filt`.
#include <sft/data/dataset.hpp>
#include <sft/data/loader.hpp>
#include <sft/loss/cross_entropy.hpp>
#include <sft/nn/activation.hpp>
#include <sft/nn/batchnorm.hpp>
#include <sft/nn/dropout.hpp>
#include <sft/nn/embedding.hpp>
#include <sft/nn/layernorm.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/flatten.hpp>
#include <sft/nn/pool.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/sequential.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/parallel.hpp>
#include <sft/sched/warmup.hpp>
#include <sft/train/progress.hpp>
#include <sft/train/trainer.hpp>

#include "train_fixtures.hpp"

#include <catch2/catch.hpp>

#include "support/counting_new.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

using sft_test::allocations;
using sft_test::window_open;

namespace {

long count() noexcept { return allocations.load(std::memory_order_relaxed); }

// Restores the thread count a test changed.
struct ThreadsGuard {
    std::size_t saved = sft::get_num_threads();
    ~ThreadsGuard() { sft::set_num_threads(saved); }
};

// "step 3: 0, step 4: 2, ..." for the failure message.
std::string describe(const std::vector<long>& per_step, std::size_t first) {
    std::string s;
    for (std::size_t i = first; i < per_step.size(); ++i) s += "step " + std::to_string(i) + ": " + std::to_string(per_step[i]) + "  ";
    return s;
}

// The model of benchmarks/mlp_epoch.cpp, scaled down: Linear-ReLU-Linear-ReLU-Linear.
sft::nn::Sequential<float> small_mlp(std::size_t in, std::size_t classes) {
    sft::Rng rng(11);
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(in, 48, true, rng));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(48, 32, true, rng));
    model.add("act2", sft::nn::ReLU<float>());
    model.add("fc3", sft::nn::Linear<float>(32, classes, true, rng));
    return model;
}

// Allocations of each step 1..20 of benchmarks/mlp_epoch.cpp's loop (shuffled DataLoader over a
// TensorDataset, zero_grad / forward / loss / backward without input gradient / AdamW step), on
// 128 samples in batches of 16: 8 steps per epoch, so steps 9 and 17 start a new epoch.
// `frozen` names a prefix to freeze first ("" for none; "fc1" fine-tunes above the first layer).
std::vector<long> loop_allocations(sft::nn::Sequential<float>& model, const sft::data::TensorDataset<float>& data, std::size_t batch = 16);

std::vector<long> manual_loop_allocations(const std::string& frozen = "") {
    const auto data = sft_test::blobs<float>(128, 24, 5, 3);
    auto model = small_mlp(24, 5);
    if (!frozen.empty()) model.freeze(frozen);
    return loop_allocations(model, data);
}

// The example's convolutional network (examples/pretrain_fashion_mnist.cpp), narrower, on 12 x 12
// images: conv 1->4 3x3, BatchNorm2d, ReLU, max-pool 2, conv 4->8 3x3, ReLU, average-pool 2, flatten,
// Linear 8->5.
sft::nn::Sequential<float> small_cnn() {
    sft::Rng rng(12);
    sft::nn::Sequential<float> model;
    model.add("conv1", sft::nn::Conv2d<float>(1, 4, 3, 1, 0, true, rng));  // [N, 4, 10, 10]
    model.add("bn1", sft::nn::BatchNorm2d<float>(4));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("pool1", sft::nn::MaxPool2d<float>(2));  // [N, 4, 5, 5]
    model.add("conv2", sft::nn::Conv2d<float>(4, 8, 3, 1, 0, true, rng));  // [N, 8, 3, 3]
    model.add("act2", sft::nn::ReLU<float>());
    model.add("pool2", sft::nn::AvgPool2d<float>(2));  // [N, 8, 1, 1]
    model.add("flatten", sft::nn::Flatten<float>());
    model.add("fc", sft::nn::Linear<float>(8, 5, true, rng));
    return model;
}

// The other layer kinds on flat inputs: Linear, LayerNorm, GELU, Dropout, BatchNorm1d, Tanh, Sigmoid.
sft::nn::Sequential<float> mixed_mlp() {
    sft::Rng rng(13);
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(24, 32, true, rng));
    model.add("ln", sft::nn::LayerNorm<float>(32));
    model.add("gelu", sft::nn::GELU<float>());
    model.add("drop", sft::nn::Dropout<float>(0.2));
    model.add("fc2", sft::nn::Linear<float>(32, 32, true, rng));
    model.add("bn", sft::nn::BatchNorm1d<float>(32));
    model.add("tanh", sft::nn::Tanh<float>());
    model.add("fc3", sft::nn::Linear<float>(32, 16, true, rng));
    model.add("sigmoid", sft::nn::Sigmoid<float>());
    model.add("fc4", sft::nn::Linear<float>(16, 5, true, rng));
    return model;
}

std::vector<long> loop_allocations(sft::nn::Sequential<float>& model, const sft::data::TensorDataset<float>& data, std::size_t batch) {
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    sft::data::DataLoader<float> loader(data, sft::data::DataLoaderOptions().batch_size(batch).shuffle(true).seed(4));
    std::vector<long> per_step(21, 0);  // allocated before any step
    std::size_t step = 0;
    double loss_sum = 0;
    long mark = count();
    model.train();
    while (step < 20) {
        for (const sft::data::Batch<float>& b : loader) {
            opt.zero_grad();
            const sft::Tensor<float> logits = model.forward(b.x);
            loss_sum += criterion.forward(logits, b.y);
            model.backward(criterion.backward(), /*need_input_grad=*/false);
            opt.step();
            ++step;
            const long now = count();
            per_step[step] = now - mark;
            mark = now;
            window_open = step >= 2 && step < 20;  // trace steps 3..20
            if (step == 20) break;
        }
    }
    window_open = false;
    REQUIRE(std::isfinite(loss_sum));
    return per_step;
}

}  // namespace

TEST_CASE("The allocation counter sees operator new", "[train][allocation]") {
    const long before = count();
    auto probe = std::make_unique<int>(1);
    CHECK(count() == before + 1);
}

TEST_CASE("DataLoader iteration allocates nothing after the first batch, epoch boundaries included", "[train][allocation][loader]") {
    ThreadsGuard guard;
    for (std::size_t threads : {1u, 2u}) {
        CAPTURE(threads);
        sft::set_num_threads(threads);
        // Rows of 784 floats and batches of 128: the gather runs on the pool at 2 threads.
        const auto data = sft_test::blobs<float>(1000, 784, 10, 1);
        for (bool shuffle : {true, false}) {
            CAPTURE(shuffle);
            sft::data::DataLoader<float> loader(data, sft::data::DataLoaderOptions().batch_size(128).shuffle(shuffle).seed(2));
            sft::data::Batch<float> b;
            loader.start_epoch();
            REQUIRE(loader.next(b));  // allocates the buffers when shuffling
            const long before = count();
            std::size_t batches = 1;
            double checksum = 0;
            for (int epoch = 0; epoch < 3; ++epoch) {
                if (epoch > 0) loader.start_epoch();
                while (loader.next(b)) {
                    checksum += b.x[0];
                    ++batches;
                }
            }
            const long allocated = count() - before;
            CHECK(batches == 3 * 8);  // 7 full batches and a tail of 104 per epoch
            CHECK(std::isfinite(checksum));
            CHECK(allocated == 0);
            // Range-for over a further epoch allocates nothing either, once `b` has let go of
            // the buffers (while a batch holds them the loader must gather into fresh ones).
            b = sft::data::Batch<float>();
            const long before_for = count();
            for (const auto& bb : loader) checksum += bb.x[0];
            CHECK(count() - before_for == 0);
        }
    }
}

TEST_CASE("The training loop of benchmarks/mlp_epoch.cpp allocates nothing per step after the first two", "[train][allocation]") {
    ThreadsGuard guard;
    for (std::size_t threads : {1u, 2u}) {
        CAPTURE(threads);
        sft::set_num_threads(threads);
        const std::vector<long> per_step = manual_loop_allocations();
        INFO("allocations per step: " << describe(per_step, 1));
        long steady = 0;
        for (std::size_t s = 3; s <= 20; ++s) steady += per_step[s];
        CHECK(steady == 0);
        // Steps 9 and 17 start an epoch (a new permutation, a new range-for): no exception for them.
        CHECK(per_step[9] == 0);
        CHECK(per_step[17] == 0);
    }
}

namespace {
// Steps 3..20 of loop_allocations for a fresh model from `make` at 1 and 2 threads: no allocation.
template <class Make>
void check_steady_state(Make make, const sft::data::TensorDataset<float>& data, std::size_t batch = 16) {
    ThreadsGuard guard;
    for (std::size_t threads : {1u, 2u}) {
        CAPTURE(threads);
        sft::set_num_threads(threads);
        auto model = make();
        const std::vector<long> per_step = loop_allocations(model, data, batch);
        INFO("allocations per step: " << describe(per_step, 1));
        long steady = 0;
        for (std::size_t s = 3; s <= 20; ++s) steady += per_step[s];
        CHECK(steady == 0);
        CHECK(per_step[1] > 0);  // the first step allocates the buffers: the counter sees the layers
    }
}
}  // namespace

TEST_CASE("The same loop on a convolutional network (Conv2d, ReLU, MaxPool2d, Flatten, Linear) allocates nothing per step after the first two",
          "[train][allocation][conv]") {
    // Conv2d runs its GEMMs inside pool tasks of a few samples each, with leased scratch and
    // per-task partial weight gradients: all kept from step to step.
    const auto flat = sft_test::blobs<float>(128, 144, 5, 3);
    check_steady_state(small_cnn, sft::data::TensorDataset<float>(flat.x().reshape({128, 1, 12, 12}), flat.y()));
}

TEST_CASE("The same loop through LayerNorm, GELU, Dropout, BatchNorm1d, Tanh and Sigmoid allocates nothing per step after the first two",
          "[train][allocation]") {
    check_steady_state(mixed_mlp, sft_test::blobs<float>(128, 24, 5, 3));
}

TEST_CASE("The same loop in batches of 64 (row-parallel runs of Sequential at 2 threads) allocates nothing per step after the first two",
          "[train][allocation]") {
    // 512 samples in batches of 64. small_mlp is one row-parallel run; mixed_mlp has one from its
    // Tanh to fc4 (Tanh, fc3, Sigmoid, fc4), after layers that run on their own.
    const auto data = sft_test::blobs<float>(512, 24, 5, 3);
    check_steady_state([] { return small_mlp(24, 5); }, data, 64);
    check_steady_state(mixed_mlp, data, 64);
}

TEST_CASE("The same loop through an Embedding (token indices to vectors, Flatten, Linear) allocates nothing per step after the first two",
          "[train][allocation]") {
    // 128 sequences of 6 token indices in [0, 40) (whole numbers in the float input, as Embedding
    // takes them), labelled by their first token mod 5.
    sft::Tensor<float> tokens = sft::Tensor<float>::empty({128, 6});
    sft::Tensor<std::int64_t> labels = sft::Tensor<std::int64_t>::empty({128});
    sft::Rng rng(21);
    for (std::size_t i = 0; i < 128; ++i) {
        for (std::size_t t = 0; t < 6; ++t) tokens(i, t) = static_cast<float>(rng.randint(40));
        labels[i] = static_cast<std::int64_t>(tokens(i, 0)) % 5;
    }
    check_steady_state(
        [] {
            sft::Rng init(22);
            sft::nn::Sequential<float> model;
            model.add("embed", sft::nn::Embedding<float>(40, 8, std::nullopt, init));
            model.add("flatten", sft::nn::Flatten<float>());
            model.add("fc", sft::nn::Linear<float>(6 * 8, 5, true, init));
            return model;
        },
        sft::data::TensorDataset<float>(tokens, labels));
}

TEST_CASE("The same loop with a frozen first layer allocates nothing per step after the first two", "[train][allocation]") {
    // Backward stops above fc1, which keeps nothing of the batch: the loader can refill its buffer.
    ThreadsGuard guard;
    for (std::size_t threads : {1u, 2u}) {
        CAPTURE(threads);
        sft::set_num_threads(threads);
        const std::vector<long> per_step = manual_loop_allocations("fc1");
        INFO("allocations per step: " << describe(per_step, 1));
        long steady = 0;
        for (std::size_t s = 3; s <= 20; ++s) steady += per_step[s];
        CHECK(steady == 0);
    }
}

namespace {

// Runs Trainer::fit (3 epochs of 8 steps on 128 samples in batches of 16, WarmupCosine, gradient
// clipping, accuracy, a user metric, a validation set) with the callbacks `extra` before a probe
// that reads the counter at each step's end, and returns the allocations between the end of step
// s-1 and the end of step s, by global step s (index 0 unused).
std::vector<long> fit_allocations(int verbose, std::vector<sft::train::Callback*> extra, const std::string& log_file) {
    const auto train = sft_test::blobs<float>(128, 24, 5, 3);
    const auto val = sft_test::blobs<float>(40, 24, 5, 8);
    auto model = small_mlp(24, 5);
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    sft::sched::WarmupCosine sched(opt, 4, 24);
    sft::train::Trainer<float> trainer(model, criterion, opt);
    trainer.set_scheduler(sched);
    trainer.add_metric("mean_logit", [](const sft::Tensor<float>& out, const sft::Tensor<std::int64_t>&) {
        double s = 0;
        for (float v : out) s += v;
        return s / static_cast<double>(out.numel());
    });
    for (auto* cb : extra) trainer.add_callback(*cb);
    std::vector<long> per_step(3 * 8 + 1, 0);
    long mark = 0;
    sft_test::Probe probe;
    probe.step_end = [&](sft::train::TrainState& s) {
        const long now = count();
        if (s.global_step < per_step.size()) per_step[s.global_step] = now - mark;
        mark = now;
        // Trace the windows the test checks: from the end of step 2 of an epoch on.
        window_open = s.step_in_epoch >= 2 && s.step_in_epoch < s.steps_per_epoch;
    };
    probe.epoch_end = [&](sft::train::TrainState&) { window_open = false; };
    probe.train_begin = [&](sft::train::TrainState&) { mark = count(); };
    trainer.add_callback(probe);
    const auto history = trainer.fit(train, val,
                                     sft::train::FitOptions()
                                         .epochs(3)
                                         .batch_size(16)
                                         .seed(6)
                                         .max_grad_norm(0.5)
                                         .verbose(verbose)
                                         .log_file(log_file));
    window_open = false;
    REQUIRE(history.steps() == 24);
    REQUIRE(history.epochs() == 3);
    CHECK(history.epoch_records().back().has("val_mean_logit"));
    return per_step;
}

// Steps 3..8 of each epoch of fit_allocations' result: their sum.
long steady_state(const std::vector<long>& per_step) {
    long sum = 0;
    for (std::size_t epoch = 0; epoch < 3; ++epoch)
        for (std::size_t k = 3; k <= 8; ++k) sum += per_step[epoch * 8 + k];
    return sum;
}

}  // namespace

TEST_CASE("Trainer::fit allocates nothing in an epoch's steady-state steps", "[train][allocation][trainer]") {
    ThreadsGuard guard;
    for (std::size_t threads : {1u, 2u}) {
        CAPTURE(threads);
        sft::set_num_threads(threads);
        {
            INFO("silent");
            const auto per_step = fit_allocations(0, {}, "");
            INFO("allocations per step: " << describe(per_step, 1));
            CHECK(steady_state(per_step) == 0);
        }
        {
            INFO("progress lines at every step, a bar, and a JSON Lines log");
            std::FILE* lines_out = std::tmpfile();
            std::FILE* bar_out = std::tmpfile();
            REQUIRE(lines_out);
            REQUIRE(bar_out);
            // Plain lines at every step (the worst case), and a terminal bar (throttled to 100 ms,
            // always drawn at an epoch's last step, which is inside the measured steps).
            sft::train::ProgressBar lines(1, lines_out, /*terminal=*/false, /*line_every=*/1);
            sft::train::ProgressBar bar(1, bar_out, /*terminal=*/true);
            const std::string log = (std::filesystem::temp_directory_path() / "sft_allocation_test_fit.jsonl").string();
            const auto per_step = fit_allocations(1, {&lines, &bar}, log);
            INFO("allocations per step: " << describe(per_step, 1));
            CHECK(steady_state(per_step) == 0);
            // The progress lines were written: one per step plus one per epoch.
            std::rewind(lines_out);
            int newlines = 0;
            for (int c; (c = std::fgetc(lines_out)) != EOF;) newlines += c == '\n';
            CHECK(newlines == 24 + 3);
            std::fclose(lines_out);
            std::fclose(bar_out);
            std::remove(log.c_str());
        }
    }
}
