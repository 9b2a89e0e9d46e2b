// The Trainer against PyTorch: a whole run (gradient accumulation with uneven steps, clipping,
// AdamW, Hugging Face's cosine schedule with warm-up) written as a PyTorch loop in
// tests/reference/ref_train.py, and clip_grad_norm_ on float32 gradients.
#include "train_fixtures.hpp"

#include <sft/io/safetensors.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/sched/warmup.hpp>
#include <sft/train/trainer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>

TEST_CASE("Trainer reproduces a PyTorch run: accumulation, clipping, AdamW, warm-up cosine", "[train][trainer][parity]") {
    sft::io::SafetensorsReader file(SFT_REFERENCE_DIR "/train_run.safetensors");
    auto prefixed = [&](const std::string& prefix) {
        std::map<std::string, sft::Tensor<double>> out;
        for (const auto& info : file.tensors())
            if (info.name.rfind(prefix, 0) == 0) out.emplace(info.name.substr(prefix.size()), file.load<double>(info.name));
        return out;
    };
    sft::data::TensorDataset<double> data(file.load<double>("x"), file.load<std::int64_t>("y"));
    auto model = sft_test::mlp<double>(6, 8, 3, 0);
    model.load_state_dict(prefixed("init."));
    sft::loss::CrossEntropy<double> ce;
    sft::optim::AdamW<double> opt(model.parameters(), sft::optim::AdamWOptions(1e-2).weight_decay(0.01));
    sft::sched::WarmupCosine sched(opt, 1, 4);
    sft::train::Trainer<double> trainer(model, ce, opt);
    trainer.set_scheduler(sched);
    const auto h = trainer.fit(data, sft::train::FitOptions()
                                         .epochs(2)
                                         .batch_size(8)
                                         .gradient_accumulation_steps(2)
                                         .shuffle(false)
                                         .max_grad_norm(0.5)
                                         .verbose(0));
    const auto loss = file.load<double>("step_loss"), norm = file.load<double>("grad_norm"), lr = file.load<double>("lr");
    REQUIRE(h.steps() == 4);
    double worst_loss = 0, worst_norm = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        CAPTURE(k);
        CHECK(h.step_records()[k].samples == (k % 2 == 0 ? 16u : 8u));
        CHECK(h.step_records()[k].lr == Approx(lr[k]).margin(1e-15));
        worst_loss = std::max(worst_loss, std::abs(h.step_records()[k].loss - loss[k]));
        worst_norm = std::max(worst_norm, std::abs(h.step_records()[k].grad_norm - norm[k]));
    }
    const double worst_weight = sft_test::max_abs_diff(sft_test::weights(model), prefixed("final."));
    INFO("max |diff| vs PyTorch: step loss " << worst_loss << ", grad norm " << worst_norm << ", final weights " << worst_weight);
    CHECK(worst_loss < 1e-12);
    CHECK(worst_norm < 1e-12);
    CHECK(worst_weight < 1e-12);
    CHECK(sft_test::max_abs_diff(prefixed("init."), prefixed("final.")) > 1e-3);  // the run moved the weights
}

TEST_CASE("clip_grad_norm_ matches PyTorch on float32 gradients", "[train][clip][parity]") {
    auto ref = sft::io::load_safetensors<float>(SFT_REFERENCE_DIR "/clip.safetensors");
    for (const char* max_norm : {"0.5", "100"}) {
        CAPTURE(max_norm);
        std::vector<std::unique_ptr<sft::nn::Parameter<float>>> owned;
        std::vector<sft::nn::Parameter<float>*> ps;
        for (int i = 0; i < 3; ++i) {
            const auto& g = ref.at("g" + std::to_string(i));
            owned.push_back(std::make_unique<sft::nn::Parameter<float>>("p", sft::Tensor<float>(g.shape())));
            owned.back()->grad().copy_(g);
            ps.push_back(owned.back().get());
        }
        const double total = sft::train::clip_grad_norm_(ps, std::stod(max_norm));
        CHECK(total == Approx(ref.at(std::string("total_norm_") + max_norm)[0]).epsilon(1e-6));
        for (int i = 0; i < 3; ++i) {
            const auto& want = ref.at(std::string("c") + max_norm + "_g" + std::to_string(i));
            for (std::size_t j = 0; j < want.numel(); ++j) CHECK(ps[i]->grad()[j] == Approx(want[j]).epsilon(1e-6));
        }
    }
}
