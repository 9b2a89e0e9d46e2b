// One side of benchmarks/step_ab.sh: the reference workload's training step (benchmarks/mlp_epoch.cpp:
// loader, MLP 784-512-256-10 forward and backward, AdamW) from one source tree, compiled with
// -DSFT_AB_SIDE=base (and -Dsft=sft_base, so that both trees link into one program) or
// -DSFT_AB_SIDE=work.
#include <sft/parallel.hpp>
#include <sft/sft.hpp>
#include "../reference_mlp.hpp"

#include <memory>
#include <string>

#define SFT_AB_CAT2(a, b) a##b
#define SFT_AB_CAT(a, b) SFT_AB_CAT2(a, b)

namespace {
struct Side {
    sft::data::TensorDataset<float> train;
    sft::nn::Sequential<float> model;
    std::unique_ptr<sft::optim::AdamW<float>> opt;
    sft::loss::CrossEntropy<float> criterion;
    sft::data::DataLoader<float> loader;
    sft::data::Batch<float> batch;
    Side(sft::data::TensorDataset<float> data, std::size_t batch_size)
        : train(std::move(data)), loader(train, sft::data::DataLoaderOptions().batch_size(batch_size).shuffle(true).drop_last(true).seed(1)) {
        sft::manual_seed(1);
        bench::add_reference_mlp(model);
        opt = std::make_unique<sft::optim::AdamW<float>>(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
        loader.start_epoch();
    }
};
std::unique_ptr<Side> side;
}  // namespace

void SFT_AB_CAT(SFT_AB_SIDE, _setup)(int threads, std::size_t batch, const char* dir) {
    sft::set_num_threads(static_cast<std::size_t>(threads));
    auto train = sft::data::load_fashion_mnist<float>("train", dir);
    train = sft::data::TensorDataset<float>(train.x().reshape({train.size(), 784}), train.y());
    side = std::make_unique<Side>(std::move(train), batch);
}

/// Runs `steps` training steps (a new epoch's order when one ends); returns the mean loss.
double SFT_AB_CAT(SFT_AB_SIDE, _steps)(int steps) {
    Side& s = *side;
    double sum = 0;
    for (int i = 0; i < steps; ++i) {
        if (!s.loader.next(s.batch)) {
            s.loader.start_epoch();
            s.loader.next(s.batch);
        }
        s.opt->zero_grad();
        const sft::Tensor<float> logits = s.model.forward(s.batch.x);
        sum += s.criterion.forward(logits, s.batch.y);
        s.model.backward(s.criterion.backward(), /*need_input_grad=*/false);
        s.opt->step();
    }
    return sum / steps;
}
