"""Optimizer trajectories from PyTorch 1.13 for tests/optim/: torch.optim.AdamW (with amsgrad),
Adam (L2 weight decay, amsgrad) and SGD (momentum, dampening, nesterov, weight decay).

Four raw parameters, flattened in this order into rows of 23 values: "w" [3, 4] and "frozen" [2]
(requires_grad False) in group 0 with the optimizer's defaults, "b" [4] and "c" [5] in group 1
with their own lr / weight_decay. At every step the gradient is that of a fixed quadratic plus
stored noise, g = a * p + noise[t], computed the same way on both sides; after step 12 every
group's lr is halved, as a scheduler would. Stored in float64: "init" [23], "a" [23],
"noise" [25, 23]; per configuration <c>, the parameters after each step: "<c>.f64" [25, 23] run in
float64 and "<c>.f32" [25, 23] run in float32 from the inputs rounded to float32. The
configurations are mirrored in tests/optim/optimizer_reference_test.cpp."""
import torch

import safetensors_io

SHAPES = [("w", (3, 4)), ("frozen", (2,)), ("b", (4,)), ("c", (5,))]
STEPS = 25
HALVE_AFTER = 12

# name: (class, group-0 options, group-1 overrides)
CONFIGS = {
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05), dict(lr=3e-2, weight_decay=0.0)),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True),
                      dict(lr=5e-3, weight_decay=0.2)),
    "adam": (torch.optim.Adam, dict(lr=1e-2), dict(lr=2e-2, weight_decay=0.01)),
    "adam_wd_amsgrad": (torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05, amsgrad=True), dict(lr=3e-2)),
    "sgd": (torch.optim.SGD, dict(lr=0.05), dict(lr=0.1)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.02, weight_decay=0.01)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), dict(lr=0.1)),
    "sgd_dampening": (torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.02), dict(weight_decay=0.0)),
}


def _split(flat, dtype):
    out, i = [], 0
    for _, shape in SHAPES:
        n = 1
        for d in shape:
            n *= d
        out.append(flat[i:i + n].reshape(shape).to(dtype).clone())
        i += n
    return out


def _run(cls, options, overrides, init, a, noise, dtype):
    params = [torch.nn.Parameter(t) for t in _split(init, dtype)]
    params[1].requires_grad_(False)
    coef = _split(a, dtype)
    opt = cls([{"params": [params[0], params[1]]}, dict(params=[params[2], params[3]], **overrides)], **options)
    rows = []
    for t in range(STEPS):
        nz = _split(noise[t], dtype)
        for p, c, e in zip(params, coef, nz):
            if p.requires_grad:
                p.grad = c * p.detach() + e
        opt.step()
        if t + 1 == HALVE_AFTER:
            for g in opt.param_groups:
                g["lr"] *= 0.5
        rows.append(torch.cat([p.detach().reshape(-1) for p in params]).to(torch.float64))
    return torch.stack(rows)


def _model_case(out_dir):
    """A model end to end: Sequential(fc1=Linear(6, 8), act1=ReLU(), fc2=Linear(8, 3)) in float32,
    fc1.bias frozen, cross-entropy with label smoothing 0.1 and two ignored targets, AdamW
    (lr 1e-2) over the decay / no-decay groups of Hugging Face's Trainer (weights wd 0.05, biases
    0), 12 steps. Stores "x", "y", "init.<param>", "losses" [12] and "final.<param>"."""
    from collections import OrderedDict
    torch.manual_seed(11)
    model = torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(6, 8), act1=torch.nn.ReLU(), fc2=torch.nn.Linear(8, 3)))
    x = torch.randn(16, 6)
    y = torch.randint(0, 3, (16,))
    y[[3, 9]] = -100
    out = {"x": x, "y": y}
    for k, v in model.state_dict().items():
        out[f"init.{k}"] = v.clone()
    model.fc1.bias.requires_grad_(False)
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    for k, v in model.state_dict().items():
        out[f"final.{k}"] = v.clone()
    file = "optim_model_reference.safetensors"
    safetensors_io.save(out, out_dir / file)
    return file


def make(out_dir):
    torch.manual_seed(3)
    total = sum(torch.Size(s).numel() for _, s in SHAPES)
    init = torch.randn(total, dtype=torch.float64)
    a = torch.rand(total, dtype=torch.float64) * 1.5 + 0.5
    noise = torch.randn(STEPS, total, dtype=torch.float64) * 0.5
    out = {"init": init, "a": a, "noise": noise}
    for name, (cls, options, overrides) in CONFIGS.items():
        out[f"{name}.f64"] = _run(cls, options, overrides, init, a, noise, torch.float64)
        out[f"{name}.f32"] = _run(cls, options, overrides, init.float(), a.float(), noise.float(), torch.float32)
    file = "optim_reference.safetensors"
    safetensors_io.save(out, out_dir / file, {"steps": str(STEPS), "halve_lr_after": str(HALVE_AFTER)})
    return [file, _model_case(out_dir)]
