/// @file sft.hpp
/// Umbrella header: includes the whole public API of sft, and nothing else.
#pragma once

#include <sft/config.hpp>
#include <sft/error.hpp>
#include <sft/parallel.hpp>
#include <sft/tensor.hpp>

#include <sft/nn/activation.hpp>
#include <sft/nn/batchnorm.hpp>
#include <sft/nn/conv2d.hpp>
#include <sft/nn/dropout.hpp>
#include <sft/nn/embedding.hpp>
#include <sft/nn/flatten.hpp>
#include <sft/nn/layernorm.hpp>
#include <sft/nn/linear.hpp>
#include <sft/nn/module.hpp>
#include <sft/nn/pool.hpp>
#include <sft/nn/sequential.hpp>

#include <sft/loss/cross_entropy.hpp>
#include <sft/loss/loss.hpp>
#include <sft/loss/mse.hpp>

#include <sft/optim/adam.hpp>
#include <sft/optim/adamw.hpp>
#include <sft/optim/optimizer.hpp>
#include <sft/optim/optimizer_base.hpp>
#include <sft/optim/param_groups.hpp>
#include <sft/optim/sgd.hpp>

#include <sft/io/dtype.hpp>
#include <sft/io/idx.hpp>
#include <sft/io/safetensors.hpp>

#include <sft/sched/cosine_annealing.hpp>
#include <sft/sched/lambda_lr.hpp>
#include <sft/sched/linear_lr.hpp>
#include <sft/sched/one_cycle.hpp>
#include <sft/sched/reduce_on_plateau.hpp>
#include <sft/sched/scheduler.hpp>
#include <sft/sched/sequential_lr.hpp>
#include <sft/sched/step_lr.hpp>
#include <sft/sched/warmup.hpp>

#include <sft/data/dataset.hpp>
#include <sft/data/fashion_mnist.hpp>
#include <sft/data/loader.hpp>
#include <sft/data/split.hpp>

#include <sft/train/callback.hpp>
#include <sft/train/clip_grad.hpp>
#include <sft/train/early_stopping.hpp>
#include <sft/train/fit_options.hpp>
#include <sft/train/history.hpp>
#include <sft/train/jsonl_log.hpp>
#include <sft/train/model_checkpoint.hpp>
#include <sft/train/monitor.hpp>
#include <sft/train/progress.hpp>
#include <sft/train/trainer.hpp>
