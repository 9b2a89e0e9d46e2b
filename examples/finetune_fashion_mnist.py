#!/usr/bin/env python3
"""The protocol of examples/pretrain_fashion_mnist.cpp + examples/finetune_fashion_mnist.cpp, in
PyTorch, so that sft's table can be set beside PyTorch's. Same data, architecture, optimizer,
schedule, early stopping, seeds and RESULT line; the random draws differ (torch's generator is not
sft's Rng), so the figures agree in distribution, not digit for digit.

Run (Debian's python3-torch 1.13, 2 threads as on the 2-core machine the figures in
docs/getting-started.md come from):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive \\
        /usr/bin/python3 examples/finetune_fashion_mnist.py [--k 20] [--seeds 0,1,2]

Protocol:
  pretraining: backbone + head on the six source classes {0, 2, 4, 5, 7, 8} (36,000 images),
    2 epochs, AdamW lr 1e-3 weight decay 0.01, batch 128, seed 0.
  fine-tuning: the four target classes {1, 3, 6, 9}, K labelled images per class (20% of them held
    out for validation, stratified), three ways: from scratch, head only (backbone frozen, new
    head), full (new head, backbone at a tenth of the head's learning rate). Each: AdamW lr 1e-3
    weight decay 0.01, warm-up + cosine schedule (5% warm-up, over 100 epochs' worth of steps),
    batch 32, early stopping on the validation loss, patience 10, best weights restored.
  reports the test accuracy on the 4,000 target test images (mean, std, min, max over the seeds)
  and the source accuracy (6,000 source test images, old head) of the backbone before and after
  full fine-tuning.

`--replay DIR --pretrained pretrained.safetensors` replays sft's runs in PyTorch: the images, initial
weights and batch orders of each seed come from the files `finetune_fashion_mnist --export-draws DIR`
wrote, so that the two libraries run the same computation and their lines can be compared one by one.

`--check finetuned.safetensors` only loads the file that sft's example saved into this PyTorch model
and prints its target test accuracy, which should be the one sft printed for it (the round trip).

Only torch and the standard library are needed (the IDX files are read with gzip + struct).
`--pretrained FILE` starts from a safetensors file (e.g. sft's pretrained.safetensors) instead of
pretraining here: it reads it with safetensors.torch.load_file when that package is installed, and
with a 15-line reader otherwise (Debian has no safetensors package).
"""
import argparse
import copy
import gzip
import json
import math
import os
import struct
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

SOURCE_CLASSES = [0, 2, 4, 5, 7, 8]
TARGET_CLASSES = [1, 3, 6, 9]


# ----------------------------------------------------------------------------------------------
# Data
def read_idx(path):
    """An IDX file (gzip or not) as a uint8 tensor of its dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load_split(root, split):
    """Images as float [N, 1, 28, 28] in [0, 1] (pixel / 255) and labels int64 [N]."""
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    return x.to(torch.float32).div_(255.0).unsqueeze(1), y.to(torch.int64)


def subset(x, y, classes):
    """The images of `classes`, labels remapped to their position in `classes`."""
    mask = torch.zeros_like(y, dtype=torch.bool)
    new_y = torch.full_like(y, -1)
    for i, c in enumerate(classes):
        mask |= y == c
        new_y[y == c] = i
    return x[mask], new_y[mask]


def k_per_class_split(y, k, val_fraction, gen):
    """Indices of k random images per class, split per class into train and validation
    (round(k * val_fraction) of each class in validation, as sft::data::train_val_split)."""
    n_val = round(k * val_fraction)
    train, val = [], []
    for c in range(int(y.max()) + 1):
        idx = (y == c).nonzero().flatten()
        pick = idx[torch.randperm(len(idx), generator=gen)[:k]]
        val.append(pick[:n_val])
        train.append(pick[n_val:])
    return torch.cat(train), torch.cat(val)


# ----------------------------------------------------------------------------------------------
# Model
def make_model(classes):
    backbone = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 32, 3), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(32, 64, 3), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(1600, 256), act3=nn.ReLU()))
    return nn.Sequential(OrderedDict(backbone=backbone, head=nn.Linear(256, classes)))


def load_safetensors(path):
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    # The format: u64 little-endian header length, JSON header, raw little-endian data.
    dtypes = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64}
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + e])
        dt = dtypes[info["dtype"]]
        t = torch.frombuffer(raw, dtype=torch.int16).view(dt) if dt in (torch.float16, torch.bfloat16) \
            else torch.frombuffer(raw, dtype=dt)
        t = t.reshape(info["shape"])
        out[name] = (t if dt == torch.int64 else t.to(torch.float32)).clone()
    return out


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    """(mean cross-entropy, accuracy) over (x, y), in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        logits = model(x[i:i + batch])
        loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(y), correct / len(y)


def warmup_cosine(warmup, total):
    """Hugging Face's get_cosine_schedule_with_warmup as a LambdaLR factor."""
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return f


def fit(model, opt, sched, x, y, xv, yv, max_epochs, batch, patience, gen, orders=None):
    """Mini-batch training with early stopping on the validation loss (restores the best
    weights). The batch order of epoch e is orders[e - 1] when given (a replay), a permutation drawn
    from `gen` otherwise. Returns (epochs run, best epoch)."""
    best, best_state, best_epoch, wait = math.inf, None, 0, 0
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = orders[epoch - 1] if orders is not None else torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        val_loss, _ = evaluate(model, xv, yv)
        if val_loss < best:
            best, best_epoch, wait = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            wait += 1
            if wait >= patience:
                break
    model.load_state_dict(best_state)
    return epoch, best_epoch


def summary(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, min(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX .gz files")
    ap.add_argument("--k", type=int, default=20, help="labelled images per target class (default 20)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--pretrained", default=None, help="start from this safetensors file instead of pretraining")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replay", metavar="DIR", default=None,
                    help="replay sft's runs: take each seed's images, initial weights and batch order from the files "
                         "that `finetune_fashion_mnist --export-draws DIR` wrote (needs --pretrained, sft's file)")
    ap.add_argument("--check", metavar="FILE", default=None,
                    help="only load sft's fine-tuned FILE (4 classes) into the PyTorch model and print its target test accuracy")
    args = ap.parse_args()
    if args.check:
        torch.set_num_threads(args.threads)
        x_test, y_test = load_split(args.data, "test")
        xt_test, yt_test = subset(x_test, y_test, TARGET_CLASSES)
        model = make_model(len(TARGET_CLASSES))
        model.load_state_dict(load_safetensors(args.check))  # strict: every name and shape must match
        _, acc = evaluate(model, xt_test, yt_test)
        print(f"{args.check}: target test accuracy in PyTorch {acc:.4f} ({len(yt_test)} images)")
        return
    if args.k < 3:
        ap.error("--k must be at least 3 (20% of k, rounded, is held out for validation per class)")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.replay and not args.pretrained:
        ap.error("--replay needs --pretrained, the pretrained file the sft runs started from")
    torch.set_num_threads(args.threads)
    t_start = time.time()

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    xs, ys = subset(x_train, y_train, SOURCE_CLASSES)
    xs_test, ys_test = subset(x_test, y_test, SOURCE_CLASSES)
    xt, yt = subset(x_train, y_train, TARGET_CLASSES)
    xt_test, yt_test = subset(x_test, y_test, TARGET_CLASSES)

    # -- pretraining on the source classes
    torch.manual_seed(0)
    pretrained = make_model(len(SOURCE_CLASSES))
    if args.pretrained:
        pretrained.load_state_dict(load_safetensors(args.pretrained))
        print(f"loaded {args.pretrained}")
    else:
        opt = torch.optim.AdamW(pretrained.parameters(), lr=1e-3, weight_decay=0.01)
        gen = torch.Generator().manual_seed(0)
        for epoch in range(1, 3):
            t0 = time.time()
            pretrained.train()
            order = torch.randperm(len(ys), generator=gen)
            total = 0.0
            for i in range(0, len(ys), 128):
                idx = order[i:i + 128]
                opt.zero_grad()
                loss = F.cross_entropy(pretrained(xs[idx]), ys[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            print(f"pretrain epoch {epoch}: train loss {total / len(ys):.4f} ({time.time() - t0:.1f} s)")
    _, source_before = evaluate(pretrained, xs_test, ys_test)
    print(f"source test accuracy (6 classes, {len(ys_test)} images): {source_before:.4f}")
    old_head = copy.deepcopy(pretrained.head)

    # -- fine-tuning on the target classes, three ways x seeds
    results = {"scratch": [], "head_only": [], "full": []}
    source_after = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        draws = None
        if args.replay:
            stem = os.path.join(args.replay, f"draws_seed{seed}")
            draws = {**load_safetensors(stem + "_f32.safetensors"), **load_safetensors(stem + "_i64.safetensors")}
            x, y, xv, yv = draws["train_x"], draws["train_y"], draws["val_x"], draws["val_y"]
            if len(draws["order"]) < args.max_epochs:
                sys.exit(f"{stem}: batch orders for {len(draws['order'])} epochs, --max-epochs is {args.max_epochs}")
        else:
            tr, va = k_per_class_split(yt, args.k, 0.2, gen)
            x, y, xv, yv = xt[tr], yt[tr], xt[va], yt[va]
        steps_per_epoch = math.ceil(len(y) / 32)
        total_steps = args.max_epochs * steps_per_epoch
        warmup = total_steps // 20
        for way in results:
            torch.manual_seed(seed)
            model = make_model(len(TARGET_CLASSES))
            if draws is not None:  # sft's initial weights for this seed
                model.load_state_dict({k[len("init."):]: v for k, v in draws.items() if k.startswith("init.")})
            if way == "scratch":
                groups = [{"params": list(model.parameters())}]
            else:
                model.backbone.load_state_dict(pretrained.backbone.state_dict())
                if way == "head_only":
                    for p in model.backbone.parameters():
                        p.requires_grad_(False)
                    groups = [{"params": list(model.head.parameters())}]
                else:
                    groups = [{"params": list(model.backbone.parameters()), "lr": 1e-4},
                              {"params": list(model.head.parameters()), "lr": 1e-3}]
            opt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.01)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, total_steps))
            t0 = time.time()
            epochs, best_epoch = fit(model, opt, sched, x, y, xv, yv, args.max_epochs, 32, args.patience,
                                     torch.Generator().manual_seed(seed), draws["order"] if draws is not None else None)
            _, acc = evaluate(model, xt_test, yt_test)
            results[way].append(acc)
            line = (f"seed {seed} {way:9s}: {epochs:3d} epochs (best {best_epoch:3d}), "
                    f"target test accuracy {acc:.4f}")
            if way == "full":
                probe = nn.Sequential(OrderedDict(backbone=model.backbone, head=old_head))
                _, src = evaluate(probe, xs_test, ys_test)
                source_after.append(src)
                line += f", source accuracy with the old head {src:.4f}"
            print(line + f" ({time.time() - t0:.1f} s)")

    print(f"\nK = {args.k} images per target class ({len(y)} train + {len(yv)} validation), "
          f"seeds {args.seeds}, test on {len(yt_test)} target images")
    print(f"{'method':10s} {'mean':>7s} {'std':>7s} {'min':>7s} {'max':>7s}")
    for way, accs in results.items():
        print(f"{way:10s} " + " ".join(f"{v:7.4f}" for v in summary(accs)))
    after = summary(source_after)
    print(f"source accuracy ({len(ys_test)} images, old head): before {source_before:.4f}, "
          f"after full fine-tuning {after[0]:.4f} (min {after[2]:.4f}, max {after[3]:.4f})")
    print(f"total time {time.time() - t_start:.1f} s")
    print(f"RESULT scratch={summary(results['scratch'])[0]:.4f} head_only={summary(results['head_only'])[0]:.4f} "
          f"full={summary(results['full'])[0]:.4f} source_before={source_before:.4f} source_after={after[0]:.4f}")


if __name__ == "__main__":
    main()
