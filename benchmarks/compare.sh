#!/usr/bin/env bash
# Builds the benchmarks, measures the machine (FMA peak, triad, AdamW against the triad, GEMM
# against OpenBLAS), then runs every workload of issue [3/5] in sft and in its peers, alternating
# program by program, RUNS times each, at 1 and 2 threads, and prints a table of medians:
#   mlp   the reference workload (Fashion-MNIST MLP 784-512-256-10, one epoch, AdamW) at each batch
#         size of BATCHES: mlp_epoch against torch_mlp_epoch (libtorch), and at batch 128 against
#         tinydnn_mlp_epoch (tiny-dnn, TINYDNN_RUNS times: one epoch takes minutes);
#   conv  one pretraining epoch of the convolutional network (36,000 images, batch 128):
#         conv_epoch against torch_conv_epoch.
# A program that is not built (peer package missing, or a build failure) is reported and skipped.
# The last line is machine readable:
#   RESULT t1_ratio_vs_libtorch=0.xx t2_ratio_vs_libtorch=0.xx t1_peak_share=0.xx ...
# Ratios are sft/peer epoch times (below 1: sft is faster); *_cpu_* ones use CPU seconds (user+sys
# of all threads, which other processes disturb much less than the wall clock); peak shares are
# the GEMM GFLOP/s of sft's epoch over threads x the measured 1-core FMA peak. Keys without a
# prefix are the MLP at batch 128, suffix _bN the MLP at batch N, prefix conv_ the conv workload,
# *_vs_tinydnn the MLP at batch 128 against tiny-dnn.
#
# The machine's limits (FMA peak, triad), the GEMM and the AdamW figures are the best of
# REPS repetitions (other processes only ever slow a run down); the epochs are medians. sft's
# GEMMs and OpenBLAS' AVX-512 ones are measured in one process, repetitions interleaved at random;
# gemm_vs_openblas_median_t<threads>_<shape> also sets the medians of those repetitions against
# each other (steadier than the best of a few on a noisy host), the lowest of the shape's three
# products (forward, input gradient, weight gradient).
#
# The 2-thread speed-up is measured twice: from the medians of the table (1-thread and 2-thread
# runs minutes apart: t2_speedup) and from PAIRS pairs of sft runs at 1 and 2 threads back to back,
# order alternating (t2_speedup_paired, the median of the pairs' ratios). Before each pair,
# core_scaling measures how much faster this machine's two cores run independent GEMM work than
# one (core_scaling, the median of those): no 2-thread program can scale beyond it, and on this
# shared host it moves between about 1.5x and 2.2x within minutes. A third measure runs both in
# one process: step_scaling times the training step at 1 and at 2 threads in alternating blocks of
# 10 steps (t2_step_speedup, per batch size: the median of adjacent blocks' ratios, the one of the
# three the host's drift does not move), and batch_split times the step's forward and backward
# on the pool at 2 threads against the batch split between two threads on private model copies
# (pool_fwd_bwd_speedup, batch_split_speedup: the bound of a design that splits the batch).
#
# Usage: benchmarks/compare.sh [build-dir]
# Environment:
#   RUNS=5                        runs per program, workload and thread count
#   BATCHES="128 32"              batch sizes of the MLP workload
#   CONV=1                        0 skips the conv workload
#   TINYDNN_RUNS=1                runs of the tiny-dnn peer per thread count (0 skips it), each
#                                 after sft's and libtorch's in one of the first TINYDNN_RUNS
#                                 repetitions of the batch-128 MLP loop
#   TINYDNN_MAX_STEPS=            if set, tiny-dnn trains K batches and its epoch time is
#                                 extrapolated (marked so in the table; for testing the script)
#   PAIRS=3                       paired runs of sft's MLP (batch 128) at 1 and 2 threads back to
#                                 back, each after a core_scaling measurement (0 skips them)
#   STEP_SCALING=1                0 skips step_scaling and batch_split
#   PEER_CORETYPES="default SkylakeX"  OpenBLAS configurations of the libtorch peers
#   REPS=5 MIN_TIME=0.3           repetitions and --benchmark_min_time of the micro-benchmarks
#   JOBS=2                        build parallelism
#
# The libtorch peers run as on a user's machine: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (this
# workplace sets them to hold OpenBLAS to AVX2), OMP_WAIT_POLICY=passive at 2 threads (libtorch
# barely scales otherwise), OMP_NUM_THREADS and OPENBLAS_NUM_THREADS at the thread count. OpenBLAS
# 0.3.21 does not know every new CPU model: with the variable unset it can fall back to its
# Prescott (SSE3) kernels, so the peer is also run with OPENBLAS_CORETYPE=SkylakeX, its AVX-512
# kernels, and the ratios of the RESULT line are taken against the faster of the two.
# tiny-dnn has no run-time thread setting: tinydnn_mlp_epoch_st (built with CNN_SINGLE_THREAD) is
# its 1-thread run, tinydnn_mlp_epoch (as shipped: std::async on hardware_concurrency() threads)
# its 2-thread run, which it refuses (and the script skips) unless the machine has 2 threads. It uses Adam without weight decay
# (it has no AdamW); see peers/tinydnn_mlp_epoch.cpp.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-bench}
runs=${RUNS:-5}
batches=${BATCHES:-128 32}
conv=${CONV:-1}
tinydnn_runs=${TINYDNN_RUNS:-1}
tinydnn_max_steps=${TINYDNN_MAX_STEPS:-}
pairs=${PAIRS:-3}
step_scaling=${STEP_SCALING:-1}
peer_coretypes=${PEER_CORETYPES:-default SkylakeX}
reps=${REPS:-5}
min_time=${MIN_TIME:-0.3}
jobs=${JOBS:-2}
bin=$build/benchmarks

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSFT_BUILD_TESTS=OFF -DSFT_BUILD_EXAMPLES=OFF -DSFT_BUILD_BENCHMARKS=ON >/dev/null
known_targets=$(cmake --build "$build" --target help 2>/dev/null)
has_target() { grep -qE "(^|[ .])$1(:|\$| )" <<<"$known_targets"; }
cmake --build "$build" --target mlp_epoch gemm_bench kernels_bench core_scaling step_scaling batch_split -j"$jobs" >/dev/null
optional="torch_mlp_epoch tinydnn_mlp_epoch tinydnn_mlp_epoch_st"
[ "$conv" = 1 ] && optional="conv_epoch torch_conv_epoch $optional"
for t in $optional; do
  if ! has_target "$t"; then
    echo "note: $t is not configured (its package is missing): skipped"
  elif ! cmake --build "$build" --target "$t" -j"$jobs" >/dev/null 2>"$build/compare_build_$t.log"; then
    echo "note: $t failed to build (see $build/compare_build_$t.log): skipped"
    rm -f "$bin/$t"
  fi
done
have() { [ -x "$bin/$1" ] && has_target "$1"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(load); $(date -u '+%F %T UTC')"
echo "== machine limits, GEMM, AdamW (best of $reps; 1 thread by CPU time, 2 threads by wall time) =="
gemm_filter='^(fma_peak|triad)$|^gemm/(fc1|fc2|fc1_b32)/(fwd|dx|dw)/(sft|eigen|openblas)/1$|^gemm/fc1/(fwd|dx|dw)/(sft|openblas)/2/real_time$'
# sft, Eigen and OpenBLAS with its AVX-512 kernels in one process (sft and Eigen do not read
# OPENBLAS_CORETYPE), their repetitions interleaved at random: sft / OpenBLAS then compares figures
# taken in the same seconds of this noisy host. OpenBLAS as installed (coretype unset) in a second run.
env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX "$bin/gemm_bench" --benchmark_filter="$gemm_filter" --benchmark_enable_random_interleaving=true \
  --benchmark_min_time="$min_time" --benchmark_repetitions="$reps" --benchmark_format=json 2>/dev/null > "$out/gemm_skx.json"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$bin/gemm_bench" --benchmark_filter='^gemm/(fc1|fc2|fc1_b32)/(fwd|dx|dw)/openblas/1$|^gemm/fc1/(fwd|dx|dw)/openblas/2/real_time$' \
  --benchmark_min_time="$min_time" --benchmark_repetitions="$reps" --benchmark_format=json 2>/dev/null > "$out/gemm_default.json"
# Every kernels_bench benchmark that reports bytes per second (AdamW, and the triads measured on
# AdamW's own working set, in and beyond the L3, when the binary has them).
"$bin/kernels_bench" --benchmark_filter='adamw|triad|zero_grad' --benchmark_min_time="$min_time" --benchmark_repetitions="$reps" \
  --benchmark_format=json 2>/dev/null > "$out/kernels.json"

peer_env() {  # peer_env <threads> <coretype or "">: the environment of a libtorch run
  local t=$1 ct=$2
  penv=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t")
  [ "$t" -gt 1 ] && penv+=(OMP_WAIT_POLICY=passive)
  [ -n "$ct" ] && penv+=(OPENBLAS_CORETYPE="$ct")
  return 0
}
record() {  # record <impl suffix or ""> <command...>: runs it, keeps its RESULT line (impl renamed
           # impl_<suffix>), shows it as progress
  local suffix=$1 line
  shift
  if ! line=$("$@" | grep '^RESULT'); then
    echo "note: no RESULT from: $*" >&2
    return 0
  fi
  [ -n "$suffix" ] && line=$(sed -E "s/ impl=([^ ]+)/ impl=\\1_$suffix/" <<<"$line")
  echo "$line" >> "$out/runs.txt"
  echo "run ($(date -u +%T), load $(load)): ${line#RESULT }"
}
torch_runs() {  # torch_runs <program> <threads> <batch>: the libtorch peer in each OpenBLAS configuration
  local prog=$1 t=$2 b=$3 ct
  have "$prog" || return 0
  for ct in $peer_coretypes; do
    [ "$ct" = default ] && ct=""
    peer_env "$t" "$ct"
    record "$ct" env "${penv[@]}" "$bin/$prog" --threads "$t" --batch "$b" --seed 0
  done
}
tinydnn_run() {  # tinydnn_run <threads>
  local t=$1 prog
  prog=tinydnn_mlp_epoch
  [ "$t" = 1 ] && prog=tinydnn_mlp_epoch_st
  have "$prog" || return 0
  echo "running $prog --threads $t (one epoch of tiny-dnn takes minutes) ..."
  record "" "$bin/$prog" --threads "$t" --batch 128 --seed 0 ${tinydnn_max_steps:+--max-steps "$tinydnn_max_steps"}
}

echo "== epochs: $runs runs per program, alternating (seeds 1..$runs for sft, 0 for the peers) =="
for b in $batches; do
  for t in 1 2; do
    for r in $(seq "$runs"); do
      record "" "$bin/mlp_epoch" --threads "$t" --batch "$b" --seed "$r"
      torch_runs torch_mlp_epoch "$t" "$b"
      if [ "$b" = 128 ] && [ "$r" -le "$tinydnn_runs" ]; then tinydnn_run "$t"; fi
    done
  done
done
if [ "$pairs" -gt 0 ]; then
  echo "== 2-thread speed-up, paired: core_scaling, then sft's MLP (batch 128) at 1 and 2 threads back to back, $pairs times =="
  for r in $(seq "$pairs"); do
    line=$("$bin/core_scaling" 4 0.25 | grep '^RESULT') && echo "$line" >> "$out/scaling.txt" && echo "core scaling ($(date -u +%T)): ${line#RESULT }"
    order="1 2"
    [ $((r % 2)) = 0 ] && order="2 1"
    for t in $order; do
      line=$("$bin/mlp_epoch" --threads "$t" --batch 128 --seed 1 | grep '^RESULT') || continue
      echo "PAIR pair=$r ${line#RESULT }" >> "$out/pairs.txt"
      echo "pair $r ($(date -u +%T)): ${line#RESULT }"
    done
  done
fi
if [ "$step_scaling" = 1 ]; then
  echo "== 2-thread speed-up in one process: step_scaling (1 against 2 threads, alternating blocks of steps), batch_split =="
  for b in $batches; do
    line=$("$bin/step_scaling" 1:2 150 12 "$b" | grep '^RESULT') && echo "$line batch=$b" >> "$out/step_scaling.txt" && echo "step_scaling batch $b ($(date -u +%T)): ${line#RESULT }"
  done
  line=$("$bin/batch_split" 100 | grep '^RESULT') && echo "$line" >> "$out/batch_split.txt" && echo "batch_split ($(date -u +%T)): ${line#RESULT }"
fi
if [ "$conv" = 1 ] && have conv_epoch; then
  for t in 1 2; do
    for r in $(seq "$runs"); do
      record "" "$bin/conv_epoch" --threads "$t" --batch 128 --seed "$r"
      torch_runs torch_conv_epoch "$t" 128
    done
  done
fi
echo "load at the end: $(load); $(date -u '+%F %T UTC')"

python3 - "$out" "$runs" <<'PY'
import json, math, re, statistics, sys
out, runs = sys.argv[1], sys.argv[2]
nan = float("nan")

def bench(path):  # the best of the repetitions: other processes only ever slow a run down
    best = {}
    try:
        data = json.load(open(path))["benchmarks"]
    except (OSError, ValueError, KeyError):
        return best
    for b in data:
        if b.get("run_type") == "aggregate" or b.get("error_occurred"): continue
        name = b.get("run_name", b["name"])
        key = "FLOPS" if "FLOPS" in b else "BYTES" if "BYTES" in b else None
        if key is None: continue
        if name not in best or b[key] > best[name][key]: best[name] = b
    return best

fields, late_fields = [], []  # late: the machine's figures, after the workloads' in the RESULT line
def put(key, value, fmt="{:.2f}", late=False):
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        (late_fields if late else fields).append(f"{key}={fmt.format(value)}")

# --- machine limits, GEMM ---
g = bench(f"{out}/gemm_default.json")  # OpenBLAS as installed
g.update({k + "@SkylakeX" if "/openblas/" in k else k: v for k, v in bench(f"{out}/gemm_skx.json").items()})  # the rest, one process
peak = g["fma_peak"]["FLOPS"] / 1e9 if "fma_peak" in g else nan
triad = g["triad"]["BYTES"] / 2**30 if "triad" in g else nan
print(f"FMA peak (1 core): {peak:.1f} GFLOP/s   triad (gemm_bench, 1 core, 3 x 128 MiB): {triad * 2**30 / 1e9:.1f} GB/s")
gf = lambda name: g.get(name, {}).get("FLOPS", nan) / 1e9
# The best of a few repetitions moves by 10-20% from run to run on this host, too much for a ratio
# near 1: the last column sets the medians of sft's and OpenBLAS SkylakeX's repetitions against
# each other, taken interleaved in the same process.
skx_reps = {}
try:
    for b in json.load(open(f"{out}/gemm_skx.json"))["benchmarks"]:
        if b.get("run_type") != "aggregate" and not b.get("error_occurred") and "FLOPS" in b:
            skx_reps.setdefault(b.get("run_name", b["name"]), []).append(b["FLOPS"])
except (OSError, ValueError, KeyError):
    pass
def median_ratio(shape, op, tn):
    s, o = skx_reps.get(f"gemm/{shape}/{op}/sft/{tn}"), skx_reps.get(f"gemm/{shape}/{op}/openblas/{tn}")
    return statistics.median(s) / statistics.median(o) if s and o else nan
print(f"{'GEMM, GFLOP/s':<32}{'sft':>9}{'eigen':>9}{'openblas':>10}{'openblas SkylakeX':>19}{'sft/best openblas':>19}{'share of peak':>15}{'sft/SkylakeX, medians':>23}")
gemm_ratio, gemm_ratio_median = {}, {}
for shape, t in (("fc1", 1), ("fc2", 1), ("fc1_b32", 1), ("fc1", 2)):
    for op in ("fwd", "dx", "dw"):
        tn = f"{t}/real_time" if t > 1 else f"{t}"  # 2 threads: timed by the wall clock
        v = lambda impl, suffix="": gf(f"gemm/{shape}/{op}/{impl}/{tn}{suffix}")
        best_ob = max((x for x in (v("openblas"), v("openblas", "@SkylakeX")) if not math.isnan(x)), default=nan)
        if math.isnan(v("sft")): continue
        ratio = v("sft") / best_ob
        gemm_ratio.setdefault((shape, t), []).append(ratio)
        mr = median_ratio(shape, op, tn)
        if not math.isnan(mr): gemm_ratio_median.setdefault((shape, t), []).append(mr)
        label = f"{shape} {op} {g.get(f'gemm/{shape}/{op}/sft/{tn}', {}).get('label', '')}, {t} thr"
        f1 = lambda x: "-" if math.isnan(x) else f"{x:.1f}"  # "-": not measured (eigen at 2 threads)
        f2 = lambda x: "-" if math.isnan(x) else f"{x:.2f}"
        print(f"{label:<32}{f1(v('sft')):>9}{f1(v('eigen')):>9}{f1(v('openblas')):>10}{f1(v('openblas', '@SkylakeX')):>19}{ratio:>19.2f}{v('sft') / (peak * t):>15.2f}{f2(mr):>23}")

# --- AdamW against the triad ---
# kernels_bench measures AdamW<float>::step() and a triad on the same working set, in the L3
# (adamw/<t>, triad_l3/<t>) and beyond it (adamw_dram/<t>, triad_dram/<t>). As its own summary: the
# rate per main-thread CPU second at 1 thread, per wall second at 2. An older kernels_bench has only
# adamw/<t>: it is then set against gemm_bench's triad.
k = bench(f"{out}/kernels.json")
def rate(name, t):  # GB/s (1e9 bytes), best of the repetitions
    b = k.get(f"{name}/{t}/real_time") or k.get(f"{name}/{t}")
    if not b: return nan
    scale = b["real_time"] / b["cpu_time"] if t == 1 and b.get("cpu_time") else 1.0
    return b["BYTES"] * scale / 1e9
adamw_pairs = [("adamw", "triad_l3", "l3", "in L3 (10M params, 160 MB)"), ("adamw_dram", "triad_dram", "dram", "DRAM (64M params, 1 GiB)")]
if any(f"triad_l3/{t}/real_time" in k for t in (1, 2)):
    print(f"{'AdamW vs triad, same working set':<40}{'thr':>4}{'AdamW GB/s':>12}{'triad GB/s':>12}{'AdamW/triad':>13}")
    for adam, tri, tag, label in adamw_pairs:
        for t in (1, 2):
            a_, t_ = rate(adam, t), rate(tri, t)
            if math.isnan(a_) or math.isnan(t_): continue
            print(f"{label:<40}{t:>4}{a_:>12.1f}{t_:>12.1f}{a_ / t_:>13.2f}")
            put(f"adamw_vs_triad_{tag}_t{t}", a_ / t_, late=True)
    for t in (1, 2):
        z = rate("zero_grad", t)
        if not math.isnan(z): print(f"{'zero_grad (10M params, 4 B/param)':<40}{t:>4}{z:>12.1f}")
else:
    triad_gb = triad * 2**30 / 1e9
    for t in (1, 2):
        a_ = rate("adamw", t)
        if math.isnan(a_): continue
        print(f"AdamW 10M params, {t} thr: {a_:.1f} GB/s ({a_ / triad_gb:.2f} of gemm_bench's triad, which is over 3 x 128 MiB)")
        if t == 1: put("adamw_triad_share_t1", a_ / triad_gb, late=True)

# --- epochs ---
rows = {}
try:
    lines = open(f"{out}/runs.txt").read().splitlines()
except OSError:
    lines = []
for line in lines:
    kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    kv["extrapolated"] = "epoch_s_extrapolated" in kv
    if kv["extrapolated"]:
        kv["epoch_s"], kv["cpu_s"] = kv["epoch_s_extrapolated"], kv["cpu_s_extrapolated"]
        kv["test_acc"] = kv.get("test_acc_partial", "nan")
    rows.setdefault((kv.get("workload", "mlp"), kv["impl"], int(kv["batch"]), int(kv["threads"])), []).append(kv)
med = lambda rs, key: statistics.median(float(r.get(key, "nan")) for r in rs)
print(f"\n== epochs: medians of up to {runs} runs (wall s; CPU s = user+sys of all threads) ==")
print("GFLOP/s: sft's GEMM work of the epoch over the wall time; peak share: that over threads x the 1-core FMA peak;")
print("cpu share: the same per CPU second; sft/this: sft's median over this row's (below 1: sft faster)")
print(f"{'workload':<9}{'impl':<20}{'batch':>6}{'thr':>4}{'runs':>5}{'epoch s':>10}{'cpu s':>9}{'test acc':>9}{'RSS MB':>8}{'GFLOP/s':>9}{'peak share':>11}{'cpu share':>10}{'sft/this':>9}{'cpu ratio':>10}")
res = {}
notes = []
order = lambda x: (x[0][0] != "mlp", x[0][0], -x[0][2], x[0][3], x[0][1] != "sft", x[0][1])
for (wl, impl, b, t), rs in sorted(rows.items(), key=order):
    wall, cpu = med(rs, "epoch_s"), med(rs, "cpu_s")
    sft = rows.get((wl, "sft", b, t))
    gflop = float(sft[0].get("gemm_gflop", "nan")) if sft else nan
    ratio = med(sft, "epoch_s") / wall if sft else nan
    cratio = med(sft, "cpu_s") / cpu if sft else nan
    share, cshare = gflop / wall / (peak * t), gflop / cpu / peak
    name = impl + ("*" if any(r["extrapolated"] for r in rs) else "")
    print(f"{wl:<9}{name:<20}{b:>6}{t:>4}{len(rs):>5}{wall:>10.3f}{cpu:>9.3f}{med(rs, 'test_acc'):>9.4f}{med(rs, 'peak_rss_mb'):>8.0f}"
          f"{gflop / wall:>9.1f}{share:>11.2f}{cshare:>10.2f}{ratio:>9.2f}{cratio:>10.2f}")
    if any(r["extrapolated"] for r in rs):
        r0 = rs[0]
        notes.append(f"* {impl} at {t} thread(s): {r0.get('steps')} of {r0.get('of')} steps, epoch time extrapolated, "
                     "accuracy of the partly trained network (TINYDNN_MAX_STEPS set)")
    key = (wl, b, t)
    if impl.startswith("libtorch"):  # against the faster libtorch configuration: the larger sft/peer ratio
        if ratio >= res.get(key + ("ratio",), (-1.0,))[0]:
            res[key + ("ratio",)] = (ratio, med(sft, "test_acc") - med(rs, "test_acc") if sft else nan)
        res[key + ("cpu",)] = max(res.get(key + ("cpu",), 0.0), cratio)
    if impl == "tinydnn":
        res[key + ("tinydnn",)] = (ratio, cratio, any(r["extrapolated"] for r in rs))
    if impl == "sft":
        res[key + ("share",)], res[key + ("cshare",)], res[key + ("wall",)] = share, cshare, wall
for n in notes: print(n)
if any(wl == "mlp" and impl == "tinydnn" for (wl, impl, b, t) in rows):
    print("tinydnn: Adam (lr 1e-3) without weight decay (tiny-dnn has no AdamW), 1 run per thread count unless TINYDNN_RUNS")

def workload_fields(wl, b, prefix, suffix):
    for t in (1, 2):
        if (wl, b, t, "ratio") in res: put(f"{prefix}t{t}_ratio_vs_libtorch{suffix}", res[(wl, b, t, "ratio")][0])
    put(f"{prefix}t1_peak_share{suffix}", res.get((wl, b, 1, "share")))
    put(f"{prefix}t1_cpu_peak_share{suffix}", res.get((wl, b, 1, "cshare")))
    for t in (1, 2):
        put(f"{prefix}t{t}_cpu_ratio_vs_libtorch{suffix}", res.get((wl, b, t, "cpu")))
    if (wl, b, 1, "wall") in res and (wl, b, 2, "wall") in res:
        put(f"{prefix}t2_speedup{suffix}", res[(wl, b, 1, "wall")] / res[(wl, b, 2, "wall")])
    if (wl, b, 1, "ratio") in res:  # test accuracy of sft minus that of the libtorch run the ratio is taken against
        put(f"{prefix}t1_acc_diff_vs_libtorch{suffix}", res[(wl, b, 1, "ratio")][1], "{:+.4f}")

mlp_batches = sorted({b for (wl, _, b, _) in rows if wl == "mlp"}, key=lambda b: (b != 128, b))
for b in mlp_batches:
    workload_fields("mlp", b, "", "" if b == 128 else f"_b{b}")
for b in sorted({b for (wl, _, b, _) in rows if wl == "conv"}):
    workload_fields("conv", b, "conv_", "" if b == 128 else f"_b{b}")
for t in (1, 2):
    if ("mlp", 128, t, "tinydnn") in res:
        ratio, cratio, extrapolated = res[("mlp", 128, t, "tinydnn")]
        x = "_extrapolated" if extrapolated else ""
        put(f"t{t}_ratio_vs_tinydnn{x}", ratio, "{:.4f}")
        put(f"t{t}_cpu_ratio_vs_tinydnn{x}", cratio, "{:.4f}")
# --- 2-thread speed-up, paired, and the machine's core scaling ---
def kv_lines(path, skip):
    try:
        return [dict(f.split("=", 1) for f in l.split()[skip:] if "=" in f) for l in open(path).read().splitlines()]
    except OSError:
        return []
scaling = [float(kv["core_scaling"]) for kv in kv_lines(f"{out}/scaling.txt", 1) if "core_scaling" in kv]
pair_runs = {}  # pair -> threads -> epoch seconds
for kv in kv_lines(f"{out}/pairs.txt", 1):
    pair_runs.setdefault(int(kv["pair"]), {})[int(kv["threads"])] = float(kv["epoch_s"])
complete = [(r, p) for r, p in sorted(pair_runs.items()) if 1 in p and 2 in p]
pair_ratios = [p[1] / p[2] for _, p in complete]
if pair_ratios or scaling:
    print("\n== 2-thread speed-up of sft's MLP (batch 128), paired runs ==")
    for (r, p), x in zip(complete, pair_ratios):
        print(f"pair {r}: 1 thread {p[1]:.3f} s, 2 threads {p[2]:.3f} s: {x:.2f}x")
    if scaling:
        print(f"core_scaling (two cores on independent GEMM work over one, {len(scaling)} measurements): "
              f"median {statistics.median(scaling):.2f}, range {min(scaling):.2f}-{max(scaling):.2f}")
step_speedups = kv_lines(f"{out}/step_scaling.txt", 1)
split = kv_lines(f"{out}/batch_split.txt", 1)
if step_speedups or split:
    print("\n== 2-thread speed-up of sft's training step in one process (1 and 2 threads in alternating blocks) ==")
    for kv in step_speedups:
        print(f"batch {kv['batch']}: 1 thread {float(kv['base_us']):.0f} us, 2 threads {float(kv['work_us']):.0f} us per step: "
              f"{float(kv['step_speedup']):.2f}x (quartiles of the block pairs {float(kv['step_speedup_q1']):.2f}-{float(kv['step_speedup_q3']):.2f})")
    for kv in split:
        print(f"forward + backward, batch 128: pool {float(kv['pool_speedup']):.2f}x, batch split between the threads "
              f"(private model copies, gradients not summed: an upper bound) {float(kv['batch_split_speedup']):.2f}x")
if pair_ratios: put("t2_speedup_paired", statistics.median(pair_ratios))
if scaling: put("core_scaling", statistics.median(scaling))
if pair_ratios and scaling: put("t2_speedup_paired_over_core_scaling", statistics.median(pair_ratios) / statistics.median(scaling))
for kv in step_speedups: put("t2_step_speedup" + ("" if kv["batch"] == "128" else "_b" + kv["batch"]), float(kv["step_speedup"]))
for kv in split:
    put("pool_fwd_bwd_speedup", float(kv["pool_speedup"]))
    put("batch_split_speedup", float(kv["batch_split_speedup"]))

if ("fc1", 1) in gemm_ratio: put("gemm_vs_openblas_t1", min(gemm_ratio[("fc1", 1)]))
for (shape, t), rs in sorted(gemm_ratio.items()):
    if (shape, t) != ("fc1", 1): put(f"gemm_vs_openblas_t{t}_{shape}", min(rs))
for (shape, t), rs in sorted(gemm_ratio_median.items()):  # the lowest of the shape's three products
    put(f"gemm_vs_openblas_median_t{t}_{shape}", min(rs))
put("fma_peak_gflops", peak, "{:.1f}")
put("triad_gbs", triad * 2**30 / 1e9, "{:.1f}")
print("\nRESULT " + " ".join(fields + late_fields))
PY
