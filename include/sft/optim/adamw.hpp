/// @file adamw.hpp
/// sft::optim::AdamW and AdamWOptions: Adam with decoupled weight decay, as torch.optim.AdamW
/// (torch 1.13, Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), amsgrad included.
#pragma once

#include <sft/optim/detail/adam_family.hpp>

namespace sft::optim {

/// Hyperparameters of AdamW, builder style as libtorch's torch::optim::AdamWOptions; defaults as
/// torch.optim.AdamW: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2, amsgrad false.
/// Each setter throws sft::Error naming the value when it is out of range (NaN included).
class AdamWOptions : public detail::AdamFamilyOptions<AdamWOptions> {
public:
    /// How errors name these options.
    static constexpr const char* name = "AdamWOptions";
    /// How errors and type_name() name the optimizer.
    static constexpr const char* optimizer_name = "AdamW";
    /// Throws sft::Error if lr is negative. Weight decay 1e-2, decoupled: p <- p (1 - lr wd).
    explicit AdamWOptions(double lr = 1e-3) : AdamFamilyOptions(lr, 1e-2) {}
};

/// AdamW, exactly as torch.optim.AdamW in torch 1.13 (single-tensor path). At step t of a
/// parameter p with gradient g, in its group's lr and weight decay wd:
///   p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  [v_max <- max(v_max, v)]
///   p <- p - lr / (1 - b1^t) * m / (sqrt(v or v_max) / sqrt(1 - b2^t) + eps)
/// State per parameter: "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad) and "step".
/// Unlike torch, m and v below the smallest normal T are stored as 0: subnormal moments (a weight
/// whose gradient stays 0) slow every later step on x86 (figures in kernels/adamw.hpp).
template <class T>
class AdamW : public detail::AdamFamily<T, AdamWOptions, /*Decoupled=*/true> {
public:
    using detail::AdamFamily<T, AdamWOptions, true>::AdamFamily;
};

}  // namespace sft::optim
