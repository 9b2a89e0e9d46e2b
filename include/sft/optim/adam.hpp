/// @file adam.hpp
/// sft::optim::Adam and AdamOptions: Adam with L2 weight decay added to the gradient, as
/// torch.optim.Adam (torch 1.13, Kingma & Ba, "Adam: A Method for Stochastic Optimization"),
/// amsgrad included. For decoupled weight decay use AdamW (optim/adamw.hpp).
#pragma once

#include <sft/optim/detail/adam_family.hpp>

namespace sft::optim {

/// Hyperparameters of Adam, builder style as libtorch's torch::optim::AdamOptions; defaults as
/// torch.optim.Adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad false.
/// Each setter throws sft::Error naming the value when it is out of range (NaN included).
class AdamOptions : public detail::AdamFamilyOptions<AdamOptions> {
public:
    /// How errors name these options.
    static constexpr const char* name = "AdamOptions";
    /// How errors and type_name() name the optimizer.
    static constexpr const char* optimizer_name = "Adam";
    /// Throws sft::Error if lr is negative. Weight decay 0: L2 added to the gradient, g <- g + wd p.
    explicit AdamOptions(double lr = 1e-3) : AdamFamilyOptions(lr, 0.0) {}
};

/// Adam, exactly as torch.optim.Adam in torch 1.13 (single-tensor path). At step t of a
/// parameter p with gradient g, in its group's lr and weight decay wd:
///   g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  [v_max <- max(v_max, v)]
///   p <- p - lr / (1 - b1^t) * m / (sqrt(v or v_max) / sqrt(1 - b2^t) + eps)
/// State per parameter: "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad) and "step".
/// Unlike torch, m and v below the smallest normal T are stored as 0 (see AdamW, kernels/adamw.hpp).
template <class T>
class Adam : public detail::AdamFamily<T, AdamOptions, /*Decoupled=*/false> {
public:
    using detail::AdamFamily<T, AdamOptions, false>::AdamFamily;
};

}  // namespace sft::optim
