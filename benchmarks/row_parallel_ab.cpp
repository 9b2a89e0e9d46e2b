// Sequential's row-parallel runs on and off, in one process: the reference workload's training
// step (benchmarks/mlp_epoch.cpp's loader, MLP 784-512-256-10, cross-entropy, AdamW) on one model,
// with set_row_parallel(true) and (false) in alternating blocks of 12 steps (2 untimed), so that
// both see the same host at the same moments. Times the three parts of each step: zero_grad +
// forward + loss, backward, the optimizer's step. Both sides compute the same bits (the test
// "Row-parallel runs of Sequential give the same bits as the layers run one by one"), so the mean
// losses agree. The ratio on/off is computed per pair of adjacent blocks; the median is reported.
// Usage: row_parallel_ab [threads (2)] [batch (128)] [pairs of blocks (150)] [data dir]
#include <sft/parallel.hpp>
#include <sft/sft.hpp>
#include "reference_mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
    const std::size_t batch = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 128;
    const int pairs = argc > 3 ? std::atoi(argv[3]) : 150;
    const std::string dir = argc > 4 ? argv[4] : sft::data::fashion_mnist_default_dir;
    if (threads < 1 || batch < 1 || pairs < 1) {
        std::fprintf(stderr, "usage: %s [threads >= 1] [batch >= 1] [pairs of blocks >= 1] [data dir]\n", argv[0]);
        return 2;
    }
    sft::set_num_threads(static_cast<std::size_t>(threads));
    auto train = sft::data::load_fashion_mnist<float>("train", dir);
    train = sft::data::TensorDataset<float>(train.x().reshape({train.size(), 784}), train.y());
    sft::manual_seed(1);
    sft::nn::Sequential<float> model;
    bench::add_reference_mlp(model);
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).weight_decay(0.01));
    sft::loss::CrossEntropy<float> criterion;
    sft::data::DataLoader<float> loader(train, sft::data::DataLoaderOptions().batch_size(batch).shuffle(true).drop_last(true).seed(1));
    sft::data::Batch<float> b;
    loader.start_epoch();
    using clock = std::chrono::steady_clock;
    auto us = [](clock::time_point a, clock::time_point z) { return std::chrono::duration<double, std::micro>(z - a).count(); };
    // [side][part]: per-block mean time of forward, backward, step, total.
    std::vector<double> part[2][4];
    std::vector<double> ratio[4];
    double loss_sum[2] = {0, 0};
    std::size_t blocks_cut[2] = {0, 0};
    for (int blk = 0; blk < 2 * pairs; ++blk) {
        const int side = blk % 2;  // 0 off, 1 on
        model.set_row_parallel(side == 1);
        double t[4] = {0, 0, 0, 0};
        for (int i = 0; i < 12; ++i) {
            if (!loader.next(b)) {
                loader.start_epoch();
                loader.next(b);
            }
            const auto t0 = clock::now();
            opt.zero_grad();
            const sft::Tensor<float> logits = model.forward(b.x);
            const float loss = criterion.forward(logits, b.y);
            const auto t1 = clock::now();
            model.backward(criterion.backward(), /*need_input_grad=*/false);
            const auto t2 = clock::now();
            opt.step();
            const auto t3 = clock::now();
            if (i < 2) continue;
            t[0] += us(t0, t1), t[1] += us(t1, t2), t[2] += us(t2, t3), t[3] += us(t0, t3);
            loss_sum[side] += loss;
        }
        blocks_cut[side] = model.forward_row_blocks();
        for (int k = 0; k < 4; ++k) part[side][k].push_back(t[k] / 10);
        if (side == 1)
            for (int k = 0; k < 4; ++k) ratio[k].push_back(part[1][k].back() / part[0][k].back());
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("threads %d, batch %zu, %d pairs of blocks of 12 steps (10 timed); rows cut into %zu blocks (on), %zu (off)\n", threads, batch,
                pairs, blocks_cut[1], blocks_cut[0]);
    std::printf("mean loss off %.6f, on %.6f\n", loss_sum[0] / (10.0 * pairs), loss_sum[1] / (10.0 * pairs));
    const char* names[4] = {"forward", "backward", "step", "total"};
    const char* keys[4] = {"forward", "backward", "optimizer", "total"};
    std::printf("%-10s %12s %12s %10s\n", "part", "off us", "on us", "on/off");
    std::string result = "RESULT";
    for (int k = 0; k < 4; ++k) {
        std::printf("%-10s %12.1f %12.1f %10.3f\n", names[k], median(part[0][k]), median(part[1][k]), median(ratio[k]));
        result += " " + std::string(keys[k]) + "_on_off=" + std::to_string(median(ratio[k])).substr(0, 5);
    }
    std::printf("%s\n", result.c_str());
}
