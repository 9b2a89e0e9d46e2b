"""Fixtures of the Trainer tests (tests/train): a whole short training run in PyTorch, written as
the loop that sft's Trainer claims to be, in float64 so that the comparison is tight.

train_run.safetensors: an MLP Linear(6, 8) -> ReLU -> Linear(8, 3) (state "init.*"), 24 samples
"x" [24, 6] and "y" [24], then 2 epochs without shuffling, batches of 8, gradient accumulation 2
(so each epoch is a step of 16 samples and a step of 8), each batch's loss weighted by its share
of the step's samples, torch.nn.utils.clip_grad_norm_(max_norm=0.5) before each step, AdamW
(lr 1e-2, weight decay 0.01) and Hugging Face's get_cosine_schedule_with_warmup(1 warm-up step,
4 steps) as a LambdaLR stepped after every optimizer step. Saved: the final state "final.*", the
per-step mean loss "step_loss" [4], the pre-clip norms "grad_norm" [4] and the lrs used "lr" [4].

clip.safetensors: clip_grad_norm_ on float32 gradients "g0" [3, 4], "g1" [5], "g2" [2, 2, 2] with
max_norm 0.5 and 100: the returned "total_norm" and the clipped gradients "c{max}_g{i}"."""
import math
from collections import OrderedDict

import torch

from safetensors_io import save


def _mlp():
    return torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(6, 8), act1=torch.nn.ReLU(), fc2=torch.nn.Linear(8, 3))).double()


def _cosine_with_warmup(warmup, total, num_cycles=0.5):
    # transformers.get_cosine_schedule_with_warmup's lr_lambda.
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))
    return f


def _train_run(out_dir):
    torch.manual_seed(0)
    model = _mlp()
    x = torch.randn(24, 6, dtype=torch.float64)
    y = torch.arange(24) % 3
    x[torch.arange(24), y] += 2.0  # learnable
    tensors = {"x": x, "y": y}
    tensors.update({"init." + k: v.clone() for k, v in model.state_dict().items()})

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_with_warmup(1, 4))
    ce = torch.nn.CrossEntropyLoss()
    batch, accum, max_norm = 8, 2, 0.5
    batches = [(i, min(i + batch, 24)) for i in range(0, 24, batch)]
    losses, norms, lrs = [], [], []
    for _epoch in range(2):
        for first in range(0, len(batches), accum):
            group = batches[first:first + accum]
            n_step = sum(e - s for s, e in group)
            opt.zero_grad()
            step_loss = 0.0
            for s, e in group:
                loss = ce(model(x[s:e]), y[s:e])
                (loss * ((e - s) / n_step)).backward()
                step_loss += loss.item() * (e - s)
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            losses.append(step_loss / n_step)
    tensors.update({"final." + k: v.clone() for k, v in model.state_dict().items()})
    tensors["step_loss"] = torch.tensor(losses, dtype=torch.float64)
    tensors["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    tensors["lr"] = torch.tensor(lrs, dtype=torch.float64)
    save(tensors, out_dir / "train_run.safetensors", {"torch": torch.__version__})


def _clip(out_dir):
    torch.manual_seed(1)
    grads = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2, 2)]
    tensors = {f"g{i}": g.clone() for i, g in enumerate(grads)}
    for max_norm in (0.5, 100):
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        tensors[f"total_norm_{max_norm}"] = total.reshape(1).float()
        for i, p in enumerate(params):
            tensors[f"c{max_norm}_g{i}"] = p.grad.clone()
    save(tensors, out_dir / "clip.safetensors", {"torch": torch.__version__})


def make(out_dir):
    _train_run(out_dir)
    _clip(out_dir)
    return ["train_run.safetensors", "clip.safetensors"]
