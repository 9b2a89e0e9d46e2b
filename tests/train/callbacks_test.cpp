// EarlyStopping (Keras' rules: patience, min_delta, baseline, start_from_epoch, mode inference,
// restore_best), ModelCheckpoint (best and last files) and ProgressBar output, driven through the
// Trainer with a scripted validation metric so that the expected epochs are known exactly.
#include "train_fixtures.hpp"

#include <sft/io/safetensors.hpp>
#include <sft/optim/sgd.hpp>
#include <sft/train/early_stopping.hpp>
#include <sft/train/model_checkpoint.hpp>
#include <sft/train/progress.hpp>
#include <sft/train/trainer.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <map>
#include <string>
#include <vector>

namespace {

using sft::train::EarlyStopping;
using sft::train::EarlyStoppingOptions;
using sft::train::FitOptions;
using sft::train::Mode;
using Weights = std::map<std::string, sft::Tensor<float>>;

// A small problem whose validation metric "score" follows `script` (one value per evaluation),
// and whose weights change at every step (SGD on a learnable problem).
struct Scripted {
    sft::data::TensorDataset<float> data = sft_test::blobs<float>(32, 4, 2, 1);
    sft::nn::Sequential<float> model = sft_test::mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt{model.parameters(), sft::optim::SGDOptions(0.05)};
    sft::train::Trainer<float> trainer{model, ce, opt};
    std::vector<double> script;
    std::size_t evals = 0;
    std::map<std::size_t, Weights> at_epoch;  // the weights at each evaluation, by epoch
    sft_test::Probe probe;

    explicit Scripted(std::vector<double> s) : script(std::move(s)) {
        trainer.add_metric("score", [this](const sft::Tensor<float>&, const sft::Tensor<std::int64_t>&) {
            REQUIRE(evals < script.size());
            return script[evals++];
        });
        probe.evaluate = [this](sft::train::TrainState& st) { at_epoch[st.epoch] = sft_test::weights(model); };
        trainer.add_callback(probe);
    }
    sft::train::History fit(std::size_t epochs) { return trainer.fit(data, data, FitOptions().epochs(epochs).batch_size(8).verbose(0)); }
};

}  // namespace

TEST_CASE("EarlyStopping stops after `patience` evaluations without improvement and restores the best weights", "[train][early_stopping]") {
    Scripted s({5, 4, 3, 3.5, 3.2, 3.1, 2.9, 2.0});
    EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(2).restore_best(true));
    s.trainer.add_callback(es);
    auto h = s.fit(8);
    CHECK(h.epochs() == 5);
    CHECK(es.stopped_epoch() == 5);
    CHECK(es.best_epoch() == 3);
    CHECK(es.best() == 3.0);
    CHECK(h.stopped_early());
    CHECK_THAT(h.stop_reason(), Catch::Contains("val_score") && Catch::Contains("epoch 3"));
    CHECK(h.best("val_score", Mode::min) == 3.0);
    CHECK(sft_test::max_abs_diff(s.at_epoch.at(3), sft_test::weights(s.model)) == 0.0);
    CHECK(sft_test::max_abs_diff(s.at_epoch.at(5), sft_test::weights(s.model)) > 1e-4);
}

TEST_CASE("EarlyStopping without restore_best leaves the last weights", "[train][early_stopping]") {
    Scripted s({5, 4, 3, 3.5, 3.2});
    EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(2));
    s.trainer.add_callback(es);
    CHECK(s.fit(8).epochs() == 5);
    CHECK(sft_test::max_abs_diff(s.at_epoch.at(5), sft_test::weights(s.model)) == 0.0);
}

TEST_CASE("EarlyStopping infers max for names containing 'acc', a tie is no improvement", "[train][early_stopping]") {
    Scripted s({0.5, 0.6, 0.6, 0.55, 0.7});
    EarlyStopping es(EarlyStoppingOptions("val_score_acc").patience(2));
    CHECK(es.mode() == Mode::max);
    // The metric is logged as val_score, so monitor that name with an explicit mode.
    EarlyStopping es2(EarlyStoppingOptions("val_score").mode(Mode::max).patience(2));
    s.trainer.add_callback(es2);
    CHECK(s.fit(5).epochs() == 4);
    CHECK(es2.best_epoch() == 2);
    CHECK(EarlyStopping(EarlyStoppingOptions("val_loss")).mode() == Mode::min);
    CHECK(EarlyStopping(EarlyStoppingOptions("val_accuracy")).mode() == Mode::max);
    CHECK_THROWS_WITH(EarlyStopping(EarlyStoppingOptions("val_f1")), Catch::Contains("'val_f1'") && Catch::Contains("Mode::min"));
}

TEST_CASE("EarlyStopping: changes smaller than min_delta do not count", "[train][early_stopping]") {
    Scripted s({1.0, 0.995, 0.992, 0.991, 0.98});
    EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(3).min_delta(0.01));
    s.trainer.add_callback(es);
    CHECK(s.fit(5).epochs() == 4);
    CHECK(es.best_epoch() == 1);
    CHECK(es.best() == 1.0);
}

TEST_CASE("EarlyStopping: the wait is reset only when the baseline is beaten too", "[train][early_stopping]") {
    {
        Scripted s({1.0, 0.9, 0.95, 0.96});
        EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(3));
        s.trainer.add_callback(es);
        CHECK(s.fit(4).epochs() == 4);
        CHECK(es.stopped_epoch() == 0);
    }
    {
        Scripted s({1.0, 0.9, 0.95, 0.96});
        EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(3).baseline(0.5));
        s.trainer.add_callback(es);
        CHECK(s.fit(4).epochs() == 3);
        CHECK(es.stopped_epoch() == 3);
        CHECK(es.best_epoch() == 2);
    }
}

TEST_CASE("EarlyStopping ignores the epochs up to start_from_epoch", "[train][early_stopping]") {
    {
        Scripted s({9, 1, 5, 4, 6, 7});
        EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(2));
        s.trainer.add_callback(es);
        CHECK(s.fit(6).epochs() == 4);
    }
    {
        Scripted s({9, 1, 5, 4, 6, 7});
        EarlyStopping es(EarlyStoppingOptions("val_score").mode(Mode::min).patience(2).start_from_epoch(2).restore_best(true));
        s.trainer.add_callback(es);
        CHECK(s.fit(6).epochs() == 6);
        CHECK(es.best_epoch() == 4);
        CHECK(es.stopped_epoch() == 6);
        CHECK(sft_test::max_abs_diff(s.at_epoch.at(4), sft_test::weights(s.model)) == 0.0);
    }
}

TEST_CASE("EarlyStopping on the real val_loss, a misspelled monitor fails naming the metrics logged", "[train][early_stopping]") {
    Scripted s(std::vector<double>(10, 0.0));
    s.trainer.add_callback(EarlyStopping(EarlyStoppingOptions("val_loss").patience(1).restore_best(true)));
    auto h = s.fit(3);
    CHECK(h.epochs() >= 2);
    CHECK(h.best("val_loss") == Approx(s.trainer.evaluate(s.data).at("loss")).epsilon(1e-6));  // best weights restored

    Scripted t(std::vector<double>(10, 0.0));
    t.trainer.add_callback(EarlyStopping(EarlyStoppingOptions("val_losss")));
    CHECK_THROWS_WITH(t.fit(2), Catch::Contains("'val_losss'") && Catch::Contains("'val_loss'"));
}

TEST_CASE("ModelCheckpoint writes the best weights at improvements and the last at every epoch", "[train][checkpoint]") {
    const std::string best = "/tmp/sft_train_test_ckpt_best.safetensors", last = "/tmp/sft_train_test_ckpt_last.safetensors";
    std::remove(best.c_str());
    std::remove(last.c_str());
    Scripted s({3, 2, 4, 1, 5});
    sft::train::ModelCheckpoint ckpt(sft::train::ModelCheckpointOptions("val_score").mode(Mode::min).best_path(best).last_path(last));
    s.trainer.add_callback(ckpt);
    s.fit(5);
    CHECK(ckpt.saves() == 3 + 5);
    CHECK(ckpt.best() == 1.0);
    auto b = sft::io::load_safetensors_with_metadata<float>(best);
    CHECK(b.metadata.at("epoch") == "4");
    CHECK(b.metadata.at("val_score") == "1");
    CHECK(sft_test::max_abs_diff(b.tensors, s.at_epoch.at(4)) == 0.0);
    auto l = sft::io::load_safetensors_with_metadata<float>(last);
    CHECK(l.metadata.at("epoch") == "5");
    CHECK(sft_test::max_abs_diff(l.tensors, sft_test::weights(s.model)) == 0.0);
    CHECK_THROWS_AS(sft::train::ModelCheckpoint(sft::train::ModelCheckpointOptions()), sft::Error);
    // Written through a temporary file renamed over the target: none is left behind.
    for (const auto& entry : std::filesystem::directory_iterator("/tmp"))
        CHECK(entry.path().filename().string().rfind("sft_train_test_ckpt_best.safetensors.tmp", 0) == std::string::npos);
}

TEST_CASE("Trainer::add_callback takes callbacks by value, by reference and as unique_ptr", "[train][callback]") {
    Scripted s(std::vector<double>(10, 1.0));
    int begins = 0;
    auto owned = std::make_unique<sft_test::Probe>();
    owned->epoch_begin = [&](sft::train::TrainState&) { ++begins; };
    s.trainer.add_callback(std::move(owned));
    sft_test::Probe by_value;
    by_value.epoch_begin = [&](sft::train::TrainState&) { begins += 10; };
    s.trainer.add_callback(std::move(by_value));
    CHECK(s.trainer.callbacks().size() == 3);  // with the Scripted probe
    s.fit(2);
    CHECK(begins == 22);
    CHECK_THROWS_WITH(s.trainer.add_callback(std::unique_ptr<sft::train::Callback>()), Catch::Contains("null"));
}

TEST_CASE("ProgressBar: plain lines off a terminal, a bar on one, epoch lines at verbosity 2", "[train][progress]") {
    auto capture = [](int verbosity, bool terminal, std::size_t line_every = 0) {
        std::FILE* f = std::tmpfile();
        REQUIRE(f);
        {
            Scripted s(std::vector<double>(10, 0.5));
            sft::train::ProgressBar bar(verbosity, f, terminal, line_every);
            s.trainer.add_callback(bar);
            s.fit(2);
        }
        std::rewind(f);
        std::string out;
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
        std::fclose(f);
        return out;
    };
    const std::string plain = capture(1, false, 2);
    CHECK_THAT(plain, Catch::Contains("epoch 1/2 step 2/4 (global 2/8)") && Catch::Contains("epoch 2/2 step 4/4 (global 8/8)") &&
                          Catch::Contains("samples/s") && Catch::Contains("ETA") && Catch::Contains("loss ") && Catch::Contains("lr 5.00e-02"));
    CHECK_THAT(plain, Catch::Contains("epoch 1/2 done in") && Catch::Contains("val_score 0.5000"));
    CHECK(plain.find('\r') == std::string::npos);
    CHECK(plain.find("step 1/4") == std::string::npos);
    // By default a plain line waits 10 seconds: this fast run prints its epoch lines only.
    const std::string timed = capture(1, false);
    CHECK_THAT(timed, Catch::Contains("epoch 2/2 done in"));
    CHECK(timed.find("step") == std::string::npos);
    const std::string tty = capture(1, true);
    CHECK_THAT(tty, Catch::Contains("\repoch 2/2 [====================] 4/4") && Catch::Contains("\x1b[K"));
    const std::string epochs_only = capture(2, false);
    CHECK_THAT(epochs_only, Catch::Contains("epoch 2/2 done in"));
    CHECK(epochs_only.find("step") == std::string::npos);
    CHECK(capture(0, true).empty());
    CHECK(sft::train::format_duration(3725) == "1:02:05");
    CHECK(sft::train::format_duration(65) == "1:05");
}
