// Trainer behaviour on small synthetic sets: learning, accumulation == one big batch, clipping ==
// torch's formula, the scheduler stepped the right number of times, the JSONL log, non-finite
// losses, train/eval modes, evaluate/predict, max_steps and eval_steps.
#include "train_fixtures.hpp"

#include <sft/optim/adamw.hpp>
#include <sft/optim/sgd.hpp>
#include <sft/sched/lambda_lr.hpp>
#include <sft/sched/reduce_on_plateau.hpp>
#include <sft/sched/step_lr.hpp>
#include <sft/sched/warmup.hpp>
#include <sft/train/model_checkpoint.hpp>
#include <sft/train/trainer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using sft::train::FitOptions;
using sft_test::blobs;
using sft_test::mlp;
using sft_test::weights;

std::string temp_path(const std::string& name) { return std::string("/tmp/sft_train_test_") + name; }

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("Trainer fits a separable problem and reports history", "[train][trainer]") {
    auto data = blobs<float>(240, 6, 3, 1);
    auto val = blobs<float>(90, 6, 3, 2);
    auto model = mlp<float>(6, 16, 3, 3);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-2));
    sft::train::Trainer<float> trainer(model, ce, opt);
    auto h = trainer.fit(data, val, FitOptions().epochs(6).batch_size(16).seed(1).verbose(0));
    CHECK(h.epochs() == 6);
    CHECK(h.steps() == 6 * 15);
    CHECK(h.eval_records().size() == 6);
    const auto losses = h.values("val_loss");
    REQUIRE(losses.size() == 6);
    CHECK(losses.back() < 0.5 * losses.front());
    CHECK(h.last("val_accuracy") > 0.9);
    CHECK(h.best("val_loss") <= losses.back());
    CHECK(h.best("val_accuracy") >= h.last("val_accuracy"));
    CHECK_FALSE(h.stopped_early());
    // The epoch's training loss is the sample-weighted mean of its steps' losses.
    double sum = 0;
    for (std::size_t i = 0; i < 15; ++i) sum += h.step_records()[i].loss * static_cast<double>(h.step_records()[i].samples);
    CHECK(h.epoch_records()[0].at("loss") == Approx(sum / 240).epsilon(1e-12));
    // evaluate() on the validation set gives the last epoch's validation metrics.
    const auto ev = trainer.evaluate(val, 7);
    CHECK(ev.at("loss") == Approx(h.last("val_loss")).epsilon(1e-6));
    CHECK(ev.at("accuracy") == Approx(h.last("val_accuracy")));
}

TEST_CASE("Trainer: the same seed gives the same run, another seed another", "[train][trainer]") {
    auto run = [](std::uint64_t seed) {
        auto data = blobs<double>(40, 4, 2, 5);
        auto model = mlp<double>(4, 6, 2, 9);
        sft::loss::CrossEntropy<double> ce;
        sft::optim::SGD<double> opt(model.parameters(), sft::optim::SGDOptions(0.1));
        sft::train::Trainer<double> trainer(model, ce, opt);
        std::vector<double> losses;
        const auto h = trainer.fit(data, FitOptions().epochs(2).batch_size(8).seed(seed).verbose(0));
        for (const auto& s : h.step_records()) losses.push_back(s.loss);
        return losses;
    };
    CHECK(run(4) == run(4));
    CHECK(run(4) != run(5));
}

TEST_CASE("Gradient accumulation over k batches equals one batch k times larger", "[train][trainer][accumulation]") {
    auto check = [](std::size_t n, std::size_t small, std::size_t k, std::size_t big, bool shuffle, std::size_t epochs, bool adamw) {
        CAPTURE(n, small, k, big, shuffle, epochs, adamw);
        auto data = blobs<double>(n, 5, 3, 11);
        auto a = mlp<double>(5, 8, 3, 21), b = mlp<double>(5, 8, 3, 21);
        const auto w0 = weights(a);
        REQUIRE(sft_test::max_abs_diff(w0, weights(b)) == 0.0);
        sft::loss::CrossEntropy<double> ce_a, ce_b;
        auto train = [&](sft::nn::Sequential<double>& m, sft::loss::CrossEntropy<double>& ce, std::size_t bs, std::size_t accum) {
            std::unique_ptr<sft::optim::OptimizerBase> opt;
            if (adamw) opt = std::make_unique<sft::optim::AdamW<double>>(m.parameters(), sft::optim::AdamWOptions(1e-2));
            else opt = std::make_unique<sft::optim::SGD<double>>(m.parameters(), sft::optim::SGDOptions(0.5));
            sft::train::Trainer<double> t(m, ce, *opt);
            return t.fit(data, FitOptions().epochs(epochs).batch_size(bs).gradient_accumulation_steps(accum).shuffle(shuffle).seed(3).verbose(0));
        };
        const auto ha = train(a, ce_a, small, k);
        const auto hb = train(b, ce_b, big, 1);
        REQUIRE(ha.steps() == hb.steps());
        for (std::size_t i = 0; i < ha.steps(); ++i) {
            CHECK(ha.step_records()[i].loss == Approx(hb.step_records()[i].loss).epsilon(1e-12));
            CHECK(ha.step_records()[i].grad_norm == Approx(hb.step_records()[i].grad_norm).epsilon(1e-12));
            CHECK(ha.step_records()[i].samples == hb.step_records()[i].samples);
        }
        CHECK(sft_test::max_abs_diff(w0, weights(a)) > 1e-3);  // it did train
        CHECK(sft_test::max_abs_diff(weights(a), weights(b)) < 1e-12);
    };
    check(32, 8, 4, 32, false, 1, false);  // one step over everything
    check(30, 8, 4, 30, true, 1, false);   // uneven last batch (8, 8, 8, 6), shuffled: same set of samples
    check(32, 4, 2, 8, false, 2, true);    // several AdamW steps, each 2 x 4 vs 1 x 8
}

TEST_CASE("clip_grad_norm_ follows torch.nn.utils.clip_grad_norm_", "[train][clip]") {
    sft::nn::Parameter<double> a("a", sft::Tensor<double>({2}, {1.0, 2.0}));
    sft::nn::Parameter<double> b("b", sft::Tensor<double>({1}, {5.0}));
    sft::nn::Parameter<double> frozen("f", sft::Tensor<double>({1}, {0.0}));
    a.grad()[0] = 3.0;
    a.grad()[1] = 0.0;
    b.grad()[0] = 4.0;
    frozen.grad()[0] = 100.0;
    frozen.requires_grad_(false);
    std::vector<sft::nn::Parameter<double>*> ps{&a, &b, &frozen};
    CHECK(sft::train::grad_norm(ps) == 5.0);
    // Above the norm: unchanged (coef = 10 / (5 + 1e-6) > 1).
    CHECK(sft::train::clip_grad_norm_(ps, 10.0) == 5.0);
    CHECK(a.grad()[0] == 3.0);
    // Below: scaled by max_norm / (total + 1e-6); the frozen gradient is not touched.
    CHECK(sft::train::clip_grad_norm_(ps, 1.0) == 5.0);
    const double coef = 1.0 / (5.0 + 1e-6);
    CHECK(a.grad()[0] == 3.0 * coef);
    CHECK(b.grad()[0] == 4.0 * coef);
    CHECK(frozen.grad()[0] == 100.0);
    CHECK(sft::train::grad_norm(ps) == Approx(1.0 - 1e-6 / 5).epsilon(1e-12));
    b.grad()[0] = std::nan("");
    CHECK_THROWS_AS(sft::train::clip_grad_norm_(ps, 1.0), sft::Error);
    CHECK_THROWS_AS(sft::train::clip_grad_norm_(ps, 0.0), sft::Error);
}

TEST_CASE("Trainer clips the global gradient norm as torch does and logs the norm before clipping", "[train][trainer][clip]") {
    auto data = blobs<double>(24, 4, 3, 7);
    for (double max_norm : {0.05, 100.0}) {
        CAPTURE(max_norm);
        auto model = mlp<double>(4, 5, 3, 8);
        auto ref = mlp<double>(4, 5, 3, 8);
        // The reference gradient of one full batch, by hand.
        sft::loss::CrossEntropy<double> ce_ref;
        ce_ref.forward(ref.forward(data.x()), data.y());
        ref.backward(ce_ref.backward());
        double sq = 0;
        for (auto* p : ref.parameters())
            for (double g : p->grad()) sq += g * g;
        const double total = std::sqrt(sq);
        const double coef = std::min(1.0, max_norm / (total + 1e-6));
        REQUIRE((max_norm < 1 ? coef < 0.5 : coef == 1.0));

        const double lr = 0.3;
        sft::loss::CrossEntropy<double> ce;
        sft::optim::SGD<double> opt(model.parameters(), sft::optim::SGDOptions(lr));
        sft::train::Trainer<double> trainer(model, ce, opt);
        auto h = trainer.fit(data, FitOptions().max_steps(1).batch_size(24).max_grad_norm(max_norm).verbose(0));
        REQUIRE(h.steps() == 1);
        CHECK(h.step_records()[0].grad_norm == Approx(total).epsilon(1e-12));
        auto r = ref.parameters();
        auto m = model.parameters();
        for (std::size_t i = 0; i < m.size(); ++i)
            for (std::size_t j = 0; j < m[i]->value().numel(); ++j)
                CHECK(m[i]->value()[j] == Approx(r[i]->value()[j] - lr * coef * r[i]->grad()[j]).margin(1e-14));
    }
}

TEST_CASE("Trainer steps each kind of scheduler the right number of times", "[train][trainer][sched]") {
    // 50 samples, batches of 8 -> 7 batches; accumulation 2 -> 4 optimizer steps per epoch.
    auto data = blobs<float>(50, 4, 2, 1);
    auto val = blobs<float>(20, 4, 2, 2);
    const auto opts = FitOptions().epochs(3).batch_size(8).gradient_accumulation_steps(2).verbose(0);

    SECTION("a per-step schedule: once per optimizer step, and the logged lr is the schedule's") {
        auto model = mlp<float>(4, 6, 2, 1);
        sft::loss::CrossEntropy<float> ce;
        sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
        sft::sched::LambdaLR sched(opt, [](std::int64_t t) { return 1.0 / (1.0 + static_cast<double>(t)); });
        sched.set_interval(sft::sched::Interval::step);
        sft::train::Trainer<float> trainer(model, ce, opt);
        trainer.set_scheduler(sched);
        auto h = trainer.fit(data, val, opts);
        CHECK(h.steps() == 12);
        CHECK(sched.last_epoch() == 12);
        for (std::size_t k = 0; k < 12; ++k) CHECK(h.step_records()[k].lr == Approx(0.1 / (1.0 + static_cast<double>(k))));
    }
    SECTION("WarmupCosine, per step by default") {
        auto model = mlp<float>(4, 6, 2, 1);
        sft::loss::CrossEntropy<float> ce;
        sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3));
        sft::sched::WarmupCosine sched(opt, 2, 12);
        sft::train::Trainer<float> trainer(model, ce, opt);
        trainer.set_scheduler(sched);
        auto h = trainer.fit(data, val, opts);
        CHECK(sched.last_epoch() == 12);
        CHECK(h.step_records()[0].lr == 0.0);                    // warm-up starts at 0
        CHECK(h.step_records()[2].lr == Approx(1e-3));           // warm-up done at step 2
        CHECK(opt.lr() == Approx(0.0).margin(1e-12));            // cosine reaches 0 at total_steps
    }
    SECTION("an epoch schedule: once per epoch") {
        auto model = mlp<float>(4, 6, 2, 1);
        sft::loss::CrossEntropy<float> ce;
        sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
        sft::sched::StepLR sched(opt, 1, 0.5);
        sft::train::Trainer<float> trainer(model, ce, opt);
        trainer.set_scheduler(sched);
        auto h = trainer.fit(data, val, opts);
        CHECK(sched.last_epoch() == 3);
        CHECK(h.step_records()[0].lr == Approx(0.1));
        CHECK(h.step_records()[4].lr == Approx(0.05));
        CHECK(h.step_records()[8].lr == Approx(0.025));
    }
    SECTION("ReduceLROnPlateau: once per evaluation, with the monitored metric") {
        auto model = mlp<float>(4, 6, 2, 1);
        sft::loss::CrossEntropy<float> ce;
        sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.0));  // lr 0: val_loss never improves
        sft::sched::ReduceLROnPlateau sched(opt, sft::sched::ReduceLROnPlateau::Mode::min, 0.5, 0);
        sft::train::Trainer<float> trainer(model, ce, opt);
        trainer.set_scheduler(sched);
        trainer.fit(data, val, FitOptions(opts).eval_steps(2));
        CHECK(sched.last_epoch() == 6);  // 12 steps, an evaluation every 2
        CHECK(sched.num_bad_epochs() == 0);
    }
}

TEST_CASE("Trainer writes a JSON Lines log that parses, one object per step and evaluation", "[train][trainer][jsonl]") {
    const std::string path = temp_path("log.jsonl");
    std::remove(path.c_str());
    auto data = blobs<float>(40, 4, 2, 1);
    auto val = blobs<float>(16, 4, 2, 2);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-2));
    sft::train::Trainer<float> trainer(model, ce, opt);
    auto h = trainer.fit(data, val, FitOptions().epochs(3).batch_size(16).log_file(path).verbose(0));

    std::ifstream in(path);
    std::string line;
    std::vector<nlohmann::json> steps, evals, epochs, ends;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);  // throws on malformed JSON
        const std::string event = j.at("event");
        if (event == "step") steps.push_back(j);
        else if (event == "eval") evals.push_back(j);
        else if (event == "epoch") epochs.push_back(j);
        else if (event == "train_end") ends.push_back(j);
        else FAIL("unexpected event " << event);
    }
    REQUIRE(steps.size() == h.steps());
    REQUIRE(steps.size() == 9);
    REQUIRE(evals.size() == 3);
    REQUIRE(epochs.size() == 3);
    REQUIRE(ends.size() == 1);
    for (std::size_t i = 0; i < steps.size(); ++i) {
        CHECK(steps[i].at("step").get<std::size_t>() == i + 1);
        CHECK(steps[i].at("epoch").get<std::size_t>() == i / 3 + 1);
        CHECK(steps[i].at("loss").get<double>() == h.step_records()[i].loss);  // shortest round-trip form: exact
        CHECK(steps[i].at("lr").get<double>() == h.step_records()[i].lr);
        CHECK(steps[i].at("grad_norm").get<double>() == h.step_records()[i].grad_norm);
    }
    for (std::size_t e = 0; e < 3; ++e) {
        CHECK(evals[e].at("val_loss").get<double>() == h.eval_records()[e].at("val_loss"));
        CHECK(evals[e].at("val_accuracy").get<double>() == h.eval_records()[e].at("val_accuracy"));
        CHECK(epochs[e].at("loss").get<double>() == h.epoch_records()[e].at("loss"));
        CHECK(epochs[e].at("step").get<std::size_t>() == 3 * (e + 1));
    }
    CHECK(ends[0].at("steps").get<std::size_t>() == 9);
}

TEST_CASE("A non-finite loss stops training with an error naming the step, no checkpoint is overwritten", "[train][trainer][nonfinite]") {
    const std::string log_path = temp_path("nan.jsonl"), last = temp_path("nan_last.safetensors");
    std::remove(last.c_str());
    auto data = blobs<float>(32, 4, 2, 1);
    auto model = mlp<float>(4, 6, 2, 1);
    sft_test::NanAt<float> loss(7);  // 4 steps per epoch: the 7th forward is step 7, epoch 2, batch 3
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-2));
    sft::train::Trainer<float> trainer(model, loss, opt);
    std::string file_after_epoch1;
    std::map<std::string, sft::Tensor<float>> after_step6;
    sft_test::Probe probe;
    probe.step_end = [&](sft::train::TrainState& s) {
        if (s.global_step == 6) after_step6 = weights(model);
    };
    probe.epoch_end = [&](sft::train::TrainState& s) {
        if (s.epoch == 1) file_after_epoch1 = read_file(last);
    };
    trainer.add_callback(sft::train::ModelCheckpoint(sft::train::ModelCheckpointOptions("loss").last_path(last)));
    trainer.add_callback(probe);
    try {
        trainer.fit(data, FitOptions().epochs(3).batch_size(8).shuffle(false).log_file(log_path).verbose(0));
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::numeric);
        CHECK_THAT(e.what(), Catch::Contains("nan at step 7") && Catch::Contains("epoch 2") && Catch::Contains("batch 3 of 4"));
    }
    REQUIRE_FALSE(file_after_epoch1.empty());
    CHECK(read_file(last) == file_after_epoch1);  // epoch 2 never ended: the checkpoint is epoch 1's
    CHECK(sft_test::max_abs_diff(after_step6, weights(model)) == 0.0);  // no update from the NaN step
    const std::string log = read_file(log_path);
    CHECK_THAT(log, Catch::Contains("\"event\":\"error\"") && Catch::Contains("at step 7"));
}

TEST_CASE("ModelCheckpoint refuses to write non-finite weights and leaves the file as it was", "[train][trainer][nonfinite]") {
    const std::string last = temp_path("guard_last.safetensors");
    std::remove(last.c_str());
    auto data = blobs<float>(16, 4, 2, 1);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> trainer(model, ce, opt);
    std::string saved;
    sft_test::Probe corrupt;
    corrupt.epoch_end = [&](sft::train::TrainState& s) {
        if (s.epoch == 1) return;
        saved = read_file(last);
        model.parameters()[2]->value()[1] = std::numeric_limits<float>::infinity();
    };
    trainer.add_callback(corrupt);  // runs before the checkpoint
    trainer.add_callback(sft::train::ModelCheckpoint(sft::train::ModelCheckpointOptions().last_path(last)));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions().epochs(2).batch_size(8).verbose(0)),
                      Catch::Contains("not written") && Catch::Contains("'fc2.weight'[1] = inf"));
    CHECK(read_file(last) == saved);
}

TEST_CASE("Trainer puts the model in train mode for fit, eval mode for evaluation, and restores it", "[train][trainer][mode]") {
    auto data = blobs<float>(24, 4, 2, 1);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> trainer(model, ce, opt);
    trainer.add_metric("training_mode", [&](const sft::Tensor<float>&, const sft::Tensor<std::int64_t>&) { return model.is_training() ? 1.0 : 0.0; });
    int steps_in_train_mode = 0;
    sft_test::Probe probe;
    probe.step_begin = [&](sft::train::TrainState&) { steps_in_train_mode += model[0].is_training(); };
    trainer.add_callback(probe);
    model.eval();
    auto h = trainer.fit(data, data, FitOptions().epochs(2).batch_size(8).verbose(0));
    CHECK(steps_in_train_mode == 6);
    CHECK(h.last("val_training_mode") == 0.0);
    CHECK_FALSE(model.is_training());  // restored
    model.train();
    CHECK(trainer.evaluate(data).at("training_mode") == 0.0);
    CHECK(model.is_training());
    trainer.predict(data);
    CHECK(model.is_training());
}

TEST_CASE("evaluate and predict match one full forward", "[train][trainer]") {
    auto data = blobs<double>(23, 4, 3, 1);
    auto model = mlp<double>(4, 6, 3, 1);
    sft::loss::CrossEntropy<double> ce;
    sft::optim::SGD<double> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<double> trainer(model, ce, opt);
    trainer.add_metric("mean_logit", [](const sft::Tensor<double>& out, const sft::Tensor<std::int64_t>&) {
        double s = 0;
        for (double v : out) s += v;
        return s / static_cast<double>(out.numel());
    });
    const auto full = model.forward(data.x()).clone();
    sft::loss::CrossEntropy<double> ce2;
    const double loss = ce2.forward(full, data.y());
    std::size_t correct = 0;
    double mean = 0;
    for (std::size_t i = 0; i < 23; ++i) {
        std::size_t best = 0;
        for (std::size_t j = 0; j < 3; ++j) {
            mean += full(i, j);
            if (full(i, j) > full(i, best)) best = j;
        }
        correct += static_cast<std::int64_t>(best) == data.y()[i];
    }
    const auto ev = trainer.evaluate(data, 5);
    CHECK(ev.at("loss") == Approx(loss).epsilon(1e-12));
    CHECK(ev.at("accuracy") == static_cast<double>(correct) / 23.0);
    CHECK(ev.at("mean_logit") == Approx(mean / 69.0).epsilon(1e-12));
    const auto pred = trainer.predict(data, 4);
    REQUIRE(pred.shape() == sft::Shape({23, 3}));
    for (std::size_t i = 0; i < pred.numel(); ++i) CHECK(pred[i] == Approx(full[i]).epsilon(1e-12));
}

TEST_CASE("max_steps overrides epochs, eval_steps evaluates every N steps", "[train][trainer]") {
    auto data = blobs<float>(50, 4, 2, 1);  // batches of 8: 7 steps per epoch
    auto val = blobs<float>(10, 4, 2, 2);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> trainer(model, ce, opt);
    auto h = trainer.fit(data, val, FitOptions().epochs(100).max_steps(10).batch_size(8).verbose(0));
    CHECK(h.steps() == 10);
    CHECK(h.epochs() == 2);
    CHECK(h.epoch_records()[1].step == 10);
    CHECK(h.eval_records().size() == 2);  // at each epoch's end, the second one cut short
    CHECK_FALSE(h.stopped_early());

    auto h2 = trainer.fit(data, val, FitOptions().epochs(2).batch_size(8).eval_steps(5).verbose(0));
    REQUIRE(h2.eval_records().size() == 2);
    CHECK(h2.eval_records()[0].step == 5);
    CHECK(h2.eval_records()[1].step == 10);
    CHECK(h2.eval_records()[1].epoch == 2);
    CHECK(h2.eval_records()[1].has("val_loss"));
}

TEST_CASE("Trainer::fit rejects bad options and mismatched sets with clear errors", "[train][trainer]") {
    auto data = blobs<float>(10, 4, 2, 1);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> trainer(model, ce, opt);
    const auto quiet = FitOptions().verbose(0);
    CHECK_THROWS_WITH(trainer.fit(data, blobs<float>(10, 5, 2, 1), quiet), Catch::Contains("[10, 4]") && Catch::Contains("[10, 5]"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).batch_size(0)), Catch::Contains("batch_size"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).gradient_accumulation_steps(0)), Catch::Contains("gradient_accumulation_steps"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).epochs(0)), Catch::Contains("nothing to train"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).batch_size(16).drop_last(true)), Catch::Contains("drop_last"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).max_grad_norm(-1)), Catch::Contains("max_grad_norm"));
    CHECK_THROWS_WITH(trainer.fit(data, FitOptions(quiet).log_file("/nonexistent/dir/log.jsonl")), Catch::Contains("/nonexistent/dir/log.jsonl"));
    sft::optim::SGD<float> other(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::sched::StepLR foreign(other, 1);
    CHECK_THROWS_WITH(trainer.set_scheduler(foreign), Catch::Contains("StepLR") && Catch::Contains("another optimizer"));
    sft::nn::Sequential<float> wrong;
    wrong.add("fc", sft::nn::Linear<float>(5, 2));
    sft::optim::SGD<float> opt2(wrong.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> bad(wrong, ce, opt2);
    CHECK_THROWS_AS(bad.fit(data, quiet), sft::Error);
}

TEST_CASE("A non-finite validation loss stops training naming the step", "[train][trainer][nonfinite]") {
    auto data = blobs<float>(32, 4, 2, 1);
    auto model = mlp<float>(4, 6, 2, 1);
    sft::loss::CrossEntropy<float> ce;
    sft::optim::SGD<float> opt(model.parameters(), sft::optim::SGDOptions(0.1));
    sft::train::Trainer<float> trainer(model, ce, opt);
    sft_test::Probe corrupt;
    corrupt.step_end = [&](sft::train::TrainState& s) {
        if (s.global_step == 3) model.parameters()[3]->value()[0] = std::numeric_limits<float>::quiet_NaN();  // fc2.bias
    };
    trainer.add_callback(corrupt);
    try {
        trainer.fit(data, data, FitOptions().epochs(2).batch_size(8).eval_steps(3).verbose(0));
        FAIL("no throw");
    } catch (const sft::Error& e) {
        CHECK(e.kind() == sft::ErrorKind::numeric);
        CHECK_THAT(e.what(), Catch::Contains("validation after step 3 (epoch 1)") && Catch::Contains("nan"));
    }
}
