"""Losses and their gradients from PyTorch 1.13 for tests/loss/: torch.nn.functional.cross_entropy
(ignore_index, label_smoothing, class weights, the three reductions, [B, T, V] logits flattened
as a language model does) and mse_loss.

Each case <c> stores its inputs in float64 ("<c>.logits", "<c>.targets" as I64, "<c>.weight",
"<c>.grad_out" for reduction none) and, computed by torch in float64 and in float32 (from the
inputs rounded to float32): "<c>.loss" / "<c>.grad" and "<c>.loss_f32" / "<c>.grad_f32"
(gradients with respect to the logits). The scalar options are in the metadata as "<c>.<option>"."""
import torch
import torch.nn.functional as F

import safetensors_io


def _ce_case(out, meta, name, logits, targets, weight=None, smoothing=0.0, ignore_index=-100, reduction="mean"):
    meta[f"{name}.label_smoothing"] = repr(smoothing)
    meta[f"{name}.ignore_index"] = str(ignore_index)
    meta[f"{name}.reduction"] = reduction
    out[f"{name}.logits"] = logits
    out[f"{name}.targets"] = targets
    if weight is not None:
        out[f"{name}.weight"] = weight
    classes = logits.shape[-1]
    grad_out = torch.rand(targets.shape, dtype=torch.float64) + 0.5 if reduction == "none" else None
    if grad_out is not None:
        out[f"{name}.grad_out"] = grad_out
    for dtype, suffix in ((torch.float64, ""), (torch.float32, "_f32")):
        x = logits.to(dtype).clone().requires_grad_(True)
        w = weight.to(dtype) if weight is not None else None
        # Flattened as a language model's loss: logits.view(-1, V), labels.view(-1).
        loss = F.cross_entropy(x.reshape(-1, classes), targets.reshape(-1), weight=w, ignore_index=ignore_index,
                               label_smoothing=smoothing, reduction=reduction)
        if reduction == "none":
            loss = loss.reshape(targets.shape)
            (loss * grad_out.to(dtype)).sum().backward()
            out[f"{name}.losses{suffix}"] = loss.detach()
            loss = loss.sum()
        else:
            loss.backward()
        out[f"{name}.loss{suffix}"] = loss.detach().reshape(1)
        out[f"{name}.grad{suffix}"] = x.grad.detach()


def _mse_case(out, meta, name, pred, target, reduction="mean"):
    meta[f"{name}.reduction"] = reduction
    out[f"{name}.pred"] = pred
    out[f"{name}.target"] = target
    for dtype, suffix in ((torch.float64, ""), (torch.float32, "_f32")):
        x = pred.to(dtype).clone().requires_grad_(True)
        loss = F.mse_loss(x, target.to(dtype), reduction=reduction)
        if reduction == "none":
            out[f"{name}.losses{suffix}"] = loss.detach()
            loss = loss.sum()
        loss.backward()
        out[f"{name}.loss{suffix}"] = loss.detach().reshape(1)
        out[f"{name}.grad{suffix}"] = x.grad.detach()


def make(out_dir):
    torch.manual_seed(7)
    out, meta = {}, {}
    n, c = 9, 7
    logits = torch.randn(n, c, dtype=torch.float64) * 3
    targets = torch.randint(0, c, (n,))
    masked = targets.clone()
    masked[[1, 4, 5]] = -100
    weight = torch.rand(c, dtype=torch.float64) + 0.25
    _ce_case(out, meta, "ce_plain", logits, targets)
    _ce_case(out, meta, "ce_ignore", logits, masked)
    _ce_case(out, meta, "ce_smooth", logits, masked, smoothing=0.15)
    _ce_case(out, meta, "ce_weight", logits, masked, weight=weight)
    _ce_case(out, meta, "ce_weight_smooth", logits, masked, weight=weight, smoothing=0.2)
    _ce_case(out, meta, "ce_sum", logits, masked, weight=weight, smoothing=0.1, reduction="sum")
    _ce_case(out, meta, "ce_none", logits, masked, weight=weight, smoothing=0.1, reduction="none")
    # A valid class used as ignore_index: its rows are ignored.
    _ce_case(out, meta, "ce_ignore_class", logits, targets, ignore_index=int(targets[0]))
    # Large logits: the log-sum-exp must subtract the row max.
    _ce_case(out, meta, "ce_large", logits * 40 + 500, targets, smoothing=0.05)
    # A language model: logits [B, T, V], labels [B, T] with the prompt masked by -100.
    b, t, v = 2, 5, 11
    lm_logits = torch.randn(b, t, v, dtype=torch.float64) * 2
    lm_labels = torch.randint(0, v, (b, t))
    lm_labels[0, :2] = -100
    lm_labels[1, :3] = -100
    _ce_case(out, meta, "ce_lm", lm_logits, lm_labels, smoothing=0.1)
    # Wide rows: more classes than a SIMD register, with a tail.
    _ce_case(out, meta, "ce_wide", torch.randn(3, 37, dtype=torch.float64), torch.tensor([0, 36, 17]), smoothing=0.1)

    pred = torch.randn(4, 6, dtype=torch.float64)
    target = torch.randn(4, 6, dtype=torch.float64)
    _mse_case(out, meta, "mse_mean", pred, target)
    _mse_case(out, meta, "mse_sum", pred, target, "sum")
    _mse_case(out, meta, "mse_none", pred, target, "none")
    name = "loss_reference.safetensors"
    safetensors_io.save(out, out_dir / name, meta)
    return [name]
