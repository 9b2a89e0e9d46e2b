// Generated from tests/contract/finetune_contract.cpp (a verbatim copy of the project's public API
// contract) without its Trainer lines, which issue 2/5 brings: everything else must compile and run.
// Regenerate: see tests/contract/README.md.
// The public API that a user of the library writes against.
//
// This program must compile unchanged against include/ with
//   g++ -std=c++17 -O2 -march=native -I include finetune_contract.cpp -lfmt -lz
// (plus whatever flags `pkg-config`/the sft::sft CMake target add), and run:
//   ./a.out pretrained.safetensors finetuned.safetensors
// where pretrained.safetensors holds the state_dict of the PyTorch model
//   torch.nn.Sequential(OrderedDict(fc1=Linear(784, 64), act1=ReLU(), fc2=Linear(64, 10)))
// saved with safetensors.torch.save_file (F32, or BF16/F16/F64 converted on load).
//
// Every name used below is part of the public API. Anything not named here is
// the library's own design. Extra optional parameters are fine; renaming is not.
#include <sft/sft.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s pretrained.safetensors finetuned.safetensors\n", argv[0]);
        return 2;
    }

    // Parameter names and layouts match PyTorch: "fc1.weight" is [out, in], "fc1.bias" is [out].
    sft::nn::Sequential<float> model;
    model.add("fc1", sft::nn::Linear<float>(784, 64));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(64, 10));

    // Strict by default: a missing key, an unexpected key or a shape mismatch throws
    // sft::Error whose what() names the key and both shapes.
    std::map<std::string, sft::Tensor<float>> pretrained = sft::io::load_safetensors<float>(argv[1]);
    model.load_state_dict(pretrained);

    // Freezing by name prefix: frozen parameters get no gradient and no update.
    model.freeze("fc1");
    for (sft::nn::Parameter<float>* p : model.parameters())
        std::printf("%s trainable=%d numel=%zu\n", p->name().c_str(), int(p->requires_grad()), p->value().numel());

    // A small labelled set: Tensor<float> [N, 784] and class indices Tensor<int64_t> [N].
    const std::size_t n = 256;
    sft::Tensor<float> x({n, 784});
    sft::Tensor<std::int64_t> y({n});
    sft::Rng rng(42);
    for (std::size_t i = 0; i < n; ++i) {
        y[i] = static_cast<std::int64_t>(i % 10);
        for (std::size_t j = 0; j < 784; ++j) x(i, j) = rng.normal() * 0.1f + (j % 10 == i % 10 ? 1.0f : 0.0f);
    }

    // PyTorch's torch.optim.AdamW semantics and defaults; options in libtorch's builder style.
    sft::optim::AdamW<float> opt(model.parameters(), sft::optim::AdamWOptions(1e-3).betas(0.9, 0.999).eps(1e-8).weight_decay(0.01));
    // Hugging Face's get_cosine_schedule_with_warmup: linear 0 -> lr over warmup, then cosine to 0.
    sft::sched::WarmupCosine sched(opt, /*warmup_steps=*/5, /*total_steps=*/100);
    sft::loss::CrossEntropy<float> criterion;

    // The low-level loop, as in PyTorch.
    for (int step = 0; step < 10; ++step) {
        opt.zero_grad();
        sft::Tensor<float> logits = model.forward(x);          // [N, 10]
        float loss = criterion.forward(logits, y);             // mean over the batch
        model.backward(criterion.backward());                  // fills .grad() of trainable parameters
        opt.step();
        sched.step();
        std::printf("step %d loss %.6f lr %.3e\n", step, loss, opt.lr());
    }

    // Back to PyTorch: safetensors.torch.load_file(argv[2]) gives the same names and shapes.
    sft::io::save_safetensors(model.state_dict(), argv[2]);
    return 0;
}
