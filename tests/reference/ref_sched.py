"""Learning-rate sequences of torch.optim.lr_scheduler (PyTorch 1.13) for tests/sched.

Every configuration drives an SGD optimizer with two parameter groups of different learning rates
(INITIAL_LR) and records the lr of both groups right after construction (row 0) and after each
optimizer.step(); scheduler.step() pair (row t), as float64 [steps + 1, 2] under "<config>.lr".
ReduceLROnPlateau configurations also store the metric fed at each step under "<config>.metric".

Hugging Face's warm-up schedules are recorded as torch's LambdaLR with transformers' exact lambdas
(transformers/optimization.py, v4.x: _get_linear_schedule_with_warmup_lr_lambda and
_get_cosine_schedule_with_warmup_lr_lambda), since transformers is not installed here.

The C++ tests (tests/sched/*_test.cpp) build the same configurations by name: keep both in step.
"""
import math
import warnings

import torch
from torch.optim import lr_scheduler as S

import safetensors_io

INITIAL_LR = (0.1, 0.003)
FILE = "sched_lr.safetensors"


# transformers/optimization.py, _get_linear_schedule_with_warmup_lr_lambda
def hf_linear(num_warmup_steps, num_training_steps):
    def lr_lambda(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
    return lr_lambda


# transformers/optimization.py, _get_cosine_schedule_with_warmup_lr_lambda
def hf_cosine(num_warmup_steps, num_training_steps, num_cycles=0.5):
    def lr_lambda(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
    return lr_lambda


def _optimizer():
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in INITIAL_LR]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, INITIAL_LR)], lr=INITIAL_LR[0])


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


# name -> (steps, factory(opt) -> scheduler)
STEPPED = {
    "constant_default": (40, lambda o: S.ConstantLR(o)),
    "constant_half_10": (40, lambda o: S.ConstantLR(o, factor=0.5, total_iters=10)),
    "constant_third_1": (40, lambda o: S.ConstantLR(o, factor=1.0 / 3, total_iters=1)),
    "linear_warmup": (40, lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=8)),
    "linear_decay": (40, lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=20)),
    "step_7_half": (60, lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    "step_10_default": (60, lambda o: S.StepLR(o, step_size=10)),
    "step_1": (40, lambda o: S.StepLR(o, step_size=1, gamma=0.9)),
    "multistep": (60, lambda o: S.MultiStepLR(o, milestones=[10, 25, 40], gamma=0.3)),
    "multistep_repeat_unsorted": (60, lambda o: S.MultiStepLR(o, milestones=[30, 5, 30, 0], gamma=0.5)),
    "exponential_095": (100, lambda o: S.ExponentialLR(o, gamma=0.95)),
    "exponential_up": (40, lambda o: S.ExponentialLR(o, gamma=1.05)),
    "cosine_50": (100, lambda o: S.CosineAnnealingLR(o, T_max=50)),
    "cosine_30_eta": (100, lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3)),
    "cosine_100": (100, lambda o: S.CosineAnnealingLR(o, T_max=100)),
    "cosine_1": (40, lambda o: S.CosineAnnealingLR(o, T_max=1)),
    "restarts_10": (100, lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10)),
    "restarts_5_mult2_eta": (100, lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=1e-4)),
    "restarts_1_mult3": (60, lambda o: S.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3)),
    # OneCycleLR: momentum cycling is not implemented in sft (cycle_momentum=False); step total_steps times.
    "onecycle_cos": (100, lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.02], total_steps=100, cycle_momentum=False)),
    "onecycle_linear": (100, lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.02], total_steps=100, anneal_strategy="linear",
                                                    cycle_momentum=False)),
    "onecycle_three_phase": (100, lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.02], total_steps=100, pct_start=0.25,
                                                         three_phase=True, cycle_momentum=False)),
    "onecycle_three_phase_linear": (80, lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=80, pct_start=0.4,
                                                               anneal_strategy="linear", three_phase=True,
                                                               cycle_momentum=False)),
    "onecycle_scalar_custom": (40, lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=40, pct_start=0.15, div_factor=10.0,
                                                          final_div_factor=100.0, cycle_momentum=False)),
    "warmup_linear_5_100": (120, lambda o: S.LambdaLR(o, hf_linear(5, 100))),
    "warmup_linear_0_50": (60, lambda o: S.LambdaLR(o, hf_linear(0, 50))),
    "warmup_linear_10_10": (40, lambda o: S.LambdaLR(o, hf_linear(10, 10))),
    "warmup_cosine_5_100": (120, lambda o: S.LambdaLR(o, hf_cosine(5, 100))),
    "warmup_cosine_0_50": (80, lambda o: S.LambdaLR(o, hf_cosine(0, 50))),
    "warmup_cosine_10_60_cycles1": (80, lambda o: S.LambdaLR(o, hf_cosine(10, 60, num_cycles=1.0))),
    "lambda_per_group": (40, lambda o: S.LambdaLR(o, [lambda t: 1.0 / (1 + t), lambda t: 0.97 ** t])),
    "sequential_linear_cosine": (60, lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=5), S.CosineAnnealingLR(o, T_max=45)], milestones=[5])),
    "sequential_constant_exponential": (40, lambda o: S.SequentialLR(
        o, [S.ConstantLR(o, factor=0.1, total_iters=2), S.ExponentialLR(o, gamma=0.9)], milestones=[2])),
    "sequential_three": (60, lambda o: S.SequentialLR(
        o, [S.ConstantLR(o, factor=0.5, total_iters=3), S.StepLR(o, step_size=4, gamma=0.5),
            S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2)], milestones=[6, 20])),
    "sequential_warmup_multistep": (50, lambda o: S.SequentialLR(
        o, [S.LambdaLR(o, hf_linear(4, 1000)), S.MultiStepLR(o, milestones=[10, 20], gamma=0.1)], milestones=[4])),
}


def _metric(kind, steps, gen):
    """A validation-loss-like sequence: falls, then plateaus with noise (min), or its mirror (max)."""
    t = torch.arange(steps, dtype=torch.float64)
    base = 1.0 + 2.0 * torch.exp(-t / 6.0) + 0.02 * torch.randn(steps, dtype=torch.float64, generator=gen)
    if kind == "max":
        return 3.0 - base
    return base


# name -> (steps, metric kind, factory)
PLATEAU = {
    "plateau_min_rel": (60, "min", lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2)),
    "plateau_min_rel_cooldown": (60, "min", lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=1,
                                                                          cooldown=3, threshold=1e-3)),
    "plateau_max_abs_minlr": (60, "max", lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=0,
                                                                       threshold=0.01, threshold_mode="abs",
                                                                       min_lr=[0.01, 0.001])),
    "plateau_min_abs_eps": (60, "min", lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.1, patience=3,
                                                                     threshold=0.05, threshold_mode="abs",
                                                                     min_lr=1e-4, eps=2e-3)),
    "plateau_max_rel_cooldown": (60, "max", lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.7, patience=2,
                                                                          cooldown=2)),
}


def make(out_dir):
    warnings.simplefilter("ignore")  # SequentialLR's step(0) warns about the deprecated epoch argument
    tensors = {"initial_lr": torch.tensor(INITIAL_LR, dtype=torch.float64)}
    for name, (steps, factory) in STEPPED.items():
        opt = _optimizer()
        sched = factory(opt)
        rows = [_lrs(opt)]
        for _ in range(steps):
            opt.step()
            sched.step()
            rows.append(_lrs(opt))
            assert sched.get_last_lr() == rows[-1], name
        tensors[name + ".lr"] = torch.tensor(rows, dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    for name, (steps, kind, factory) in PLATEAU.items():
        opt = _optimizer()
        sched = factory(opt)
        metric = _metric(kind, steps, gen)
        rows = [_lrs(opt)]
        for t in range(steps):
            opt.step()
            sched.step(float(metric[t]))
            rows.append(_lrs(opt))
        tensors[name + ".lr"] = torch.tensor(rows, dtype=torch.float64)
        tensors[name + ".metric"] = metric
    safetensors_io.save(tensors, out_dir / FILE, {"torch": torch.__version__, "initial_lr": str(INITIAL_LR)})
    return [FILE]
