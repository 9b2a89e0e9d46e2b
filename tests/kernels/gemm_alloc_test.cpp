// kernels::gemm and kernels::gemm_bias_act allocate nothing once their packing buffers exist, at 1
// and 2 threads, on the three products of the reference workload's layers (batch 128 and 32):
// counted by replacing the global operator new for this test binary. The replacement only counts,
// then allocates as usual, so the other tests linked into sft_test_core are unaffected.
#include <sft/kernels/gemm.hpp>
#include <sft/parallel.hpp>

#include <catch2/catch.hpp>

#include "support/counting_new.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

using sft_test::allocations;

namespace {
struct ThreadCountGuard {
    ~ThreadCountGuard() { sft::set_num_threads(sft::detail::hardware_threads()); }
};

/// One training step's products of the MLP 784-512-256-10 at `batch` rows: forward with the fused
/// bias + ReLU, the input gradient and the weight gradient of each layer.
struct Step {
    std::size_t batch;
    std::vector<float> x, w, g, b, y, dx, dw;
    explicit Step(std::size_t rows) : batch(rows), x(rows * 784, 0.5f), w(512 * 784, 0.25f), g(rows * 512, -0.5f), b(512, 0.1f),
                                      y(rows * 512), dx(rows * 784), dw(512 * 784, 0.0f) {}
    void run() {
        using sft::kernels::GemmActivation;
        const std::size_t layers[3][2] = {{784, 512}, {512, 256}, {256, 10}};
        for (const auto& l : layers) {
            const std::size_t in = l[0], out = l[1];
            sft::kernels::gemm_bias_act<float>(false, true, batch, out, in, x.data(), in, w.data(), in, b.data(), GemmActivation::relu, y.data(), out);
            sft::kernels::gemm<float>(false, false, batch, in, out, 1.0f, g.data(), out, w.data(), in, 0.0f, dx.data(), in);
            sft::kernels::gemm<float>(true, false, out, in, batch, 1.0f, g.data(), out, x.data(), in, 1.0f, dw.data(), in);
        }
    }
};
}  // namespace

TEST_CASE("kernels: gemm and gemm_bias_act allocate nothing in a steady state, at 1 and 2 threads", "[kernels][gemm][allocation]") {
    ThreadCountGuard guard;
    Step big(128), small(32);
    for (std::size_t threads : {1, 2}) {
        INFO("threads " << threads);
        sft::set_num_threads(threads);
        big.run();  // the first calls allocate the packing buffers (per thread, and the shared one)
        small.run();
        big.run();
        const long before = allocations.load();
        for (int i = 0; i < 5; ++i) {
            big.run();
            small.run();
        }
        CHECK(allocations.load() - before == 0);
    }
    // The count is live: a vector allocates.
    const long before = allocations.load();
    std::vector<float> v(10);
    CHECK(allocations.load() - before == 1);
}
