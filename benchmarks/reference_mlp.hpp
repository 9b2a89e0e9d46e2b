// The reference workload's network: MLP 784-512-256-10 with ReLU, as mlp_epoch, the step A/B and
// scaling programs (ab/step_ab_impl.cpp) and batch_split build it. step_phases builds the same
// layers one by one, to time them.
#pragma once
#include <sft/sft.hpp>

namespace bench {
inline void add_reference_mlp(sft::nn::Sequential<float>& model) {
    model.add("fc1", sft::nn::Linear<float>(784, 512));
    model.add("act1", sft::nn::ReLU<float>());
    model.add("fc2", sft::nn::Linear<float>(512, 256));
    model.add("act2", sft::nn::ReLU<float>());
    model.add("fc3", sft::nn::Linear<float>(256, 10));
}
}  // namespace bench
