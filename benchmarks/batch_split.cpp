// What would splitting the batch between the threads give? The reference workload's forward and
// backward (benchmarks/mlp_epoch.cpp's step without the optimizer: loader, MLP 784-512-256-10,
// cross-entropy, batch 128), timed three ways in rotation, blocks of 12 steps (2 untimed) each, so
// that all three see the same host at the same moment:
//   1 thread       batch 128 on one thread (set_num_threads(1));
//   pool           batch 128 on sft's pool at 2 threads, as the library runs it (each product
//                  split along its output's columns, elementwise passes split by chunks);
//   batch split    two std::threads, each running the 1-thread step of its own model copy on 64
//                  rows (set_num_threads(1)): nothing crosses between the cores, and the weight
//                  gradients of the two halves are not summed (a real batch split would have to).
// The batch split's speed-up is an upper bound of what a library that keeps each thread on its
// own rows through all layers could reach; the pool's is what sft reaches. A diagnostic of thread
// scaling (benchmarks/RESULTS.md).
// Usage: batch_split [blocks (100)] [data dir]
#include <sft/parallel.hpp>
#include <sft/sft.hpp>
#include "reference_mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

namespace {
struct Side {
    sft::data::TensorDataset<float> train;
    sft::nn::Sequential<float> model;
    sft::loss::CrossEntropy<float> criterion;
    sft::data::DataLoader<float> loader;
    sft::data::Batch<float> batch;
    double loss = 0;
    Side(const sft::data::TensorDataset<float>& data, std::size_t batch_size)
        : train(data), loader(train, sft::data::DataLoaderOptions().batch_size(batch_size).shuffle(true).drop_last(true).seed(1)) {
        sft::manual_seed(1);
        bench::add_reference_mlp(model);
        loader.start_epoch();
    }
    void steps(int n) {
        for (int i = 0; i < n; ++i) {
            if (!loader.next(batch)) {
                loader.start_epoch();
                loader.next(batch);
            }
            for (auto* p : model.parameters()) p->zero_grad_();
            loss += criterion.forward(model.forward(batch.x), batch.y);
            model.backward(criterion.backward(), /*need_input_grad=*/false);
        }
    }
};

double micros_per_step(const std::chrono::steady_clock::time_point& t0, int steps) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
}
}  // namespace

int main(int argc, char** argv) {
    const int blocks = argc > 1 ? std::atoi(argv[1]) : 100;
    const char* dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
    if (blocks < 1) {
        std::fprintf(stderr, "usage: batch_split [blocks >= 1] [data dir]\n");
        return 2;
    }
    auto train = sft::data::load_fashion_mnist<float>("train", dir);
    train = sft::data::TensorDataset<float>(train.x().reshape({train.size(), 784}), train.y());
    Side one(train, 128), pool(train, 128), half_a(train, 64), half_b(train, 64);
    constexpr int block = 12, timed = block - 2;
    std::vector<double> t_one, t_pool, t_split, s_pool, s_split;
    for (int b = 0; b < blocks + 3; ++b) {
        sft::set_num_threads(1);
        one.steps(2);
        auto t0 = std::chrono::steady_clock::now();
        one.steps(timed);
        const double u_one = micros_per_step(t0, timed);

        sft::set_num_threads(2);
        pool.steps(2);
        t0 = std::chrono::steady_clock::now();
        pool.steps(timed);
        const double u_pool = micros_per_step(t0, timed);

        sft::set_num_threads(1);
        half_a.steps(2);
        half_b.steps(2);
        t0 = std::chrono::steady_clock::now();
        std::thread other([&] { half_b.steps(timed); });
        half_a.steps(timed);
        other.join();
        const double u_split = micros_per_step(t0, timed);
        if (b < 3) continue;  // warm-up
        t_one.push_back(u_one), t_pool.push_back(u_pool), t_split.push_back(u_split);
        s_pool.push_back(u_one / u_pool), s_split.push_back(u_one / u_split);
    }
    auto pct = [](std::vector<double> v, double q) {
        std::sort(v.begin(), v.end());
        return v[static_cast<std::size_t>(q * double(v.size() - 1))];
    };
    std::printf("forward + backward of the reference step (no optimizer), %d rotations of %d timed steps each\n", blocks, timed);
    std::printf("1 thread, batch 128:            median %7.1f us per step\n", pct(t_one, 0.5));
    std::printf("pool, 2 threads, batch 128:     median %7.1f us per step, speed-up %.3f (quartiles %.3f - %.3f)\n", pct(t_pool, 0.5),
                pct(s_pool, 0.5), pct(s_pool, 0.25), pct(s_pool, 0.75));
    std::printf("batch split, 2 x 64 rows:       median %7.1f us per step, speed-up %.3f (quartiles %.3f - %.3f)\n", pct(t_split, 0.5),
                pct(s_split, 0.5), pct(s_split, 0.25), pct(s_split, 0.75));
    std::printf("mean losses: 1 thread %.4f, pool %.4f (equal: results do not depend on the thread count)\n", one.loss / (blocks + 3) / block,
                pool.loss / (blocks + 3) / block);
    std::printf("RESULT pool_speedup=%.3f batch_split_speedup=%.3f one_us=%.1f pool_us=%.1f split_us=%.1f\n", pct(s_pool, 0.5),
                pct(s_split, 0.5), pct(t_one, 0.5), pct(t_pool, 0.5), pct(t_split, 0.5));
}
