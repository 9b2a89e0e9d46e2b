#!/usr/bin/env bash
# Builds the benchmarks, measures the machine (FMA peak, triad, GEMM vs OpenBLAS), then runs the
# reference workload (Fashion-MNIST MLP 784-512-256-10, one epoch, AdamW) in sft and in libtorch
# alternately, RUNS times each, at 1 and 2 threads, and prints a table of medians. The last line
# is machine readable:
#   RESULT t1_ratio_vs_libtorch=0.xx t2_ratio_vs_libtorch=0.xx t1_peak_share=0.xx ...
#
# The machine's limits (FMA peak, triad) and the GEMM and AdamW figures are the best of 5
# repetitions; the epochs are medians.
#
# Usage: benchmarks/compare.sh [build-dir]
# Environment: RUNS=5 (runs per program and thread count), BATCHES="128 32" (batch sizes),
#              PEER_CORETYPES="default SkylakeX" (OpenBLAS configurations of the libtorch peer).
#
# The peer runs as on a user's machine: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (this
# workplace sets them to hold OpenBLAS to AVX2), OMP_WAIT_POLICY=passive at 2 threads (libtorch
# barely scales otherwise), OMP_NUM_THREADS and OPENBLAS_NUM_THREADS at the thread count. OpenBLAS
# 0.3.21 does not know every new CPU model: with the variable unset it can fall back to its
# Prescott (SSE3) kernels, so the peer is also run with OPENBLAS_CORETYPE=SkylakeX, its AVX-512
# kernels, and the ratios of the RESULT line are taken against the faster of the two.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-bench}
runs=${RUNS:-5}
batches=${BATCHES:-128}
peer_coretypes=${PEER_CORETYPES:-default SkylakeX}
jobs=${JOBS:-2}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSFT_BUILD_TESTS=OFF -DSFT_BUILD_EXAMPLES=OFF -DSFT_BUILD_BENCHMARKS=ON >/dev/null
targets="mlp_epoch gemm_bench kernels_bench"
if grep -q "torch_mlp_epoch" "$build/benchmarks/Makefile" 2>/dev/null || grep -q "torch_mlp_epoch" "$build/build.ninja" 2>/dev/null; then
  targets="$targets torch_mlp_epoch"
fi
cmake --build "$build" --target $targets -j"$jobs" >/dev/null
sft_bin=$build/benchmarks/mlp_epoch
torch_bin=$build/benchmarks/torch_mlp_epoch
[ -x "$torch_bin" ] || torch_bin=""
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== machine limits and GEMM (1 thread, CPU time) =="
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$build/benchmarks/gemm_bench" --benchmark_filter='^(fma_peak|triad)$|gemm/fc1/(fwd|dx|dw)/(sft|eigen|openblas)/1$' \
  --benchmark_min_time=0.3 --benchmark_repetitions=5 --benchmark_format=json 2>/dev/null > "$out/gemm_default.json"
env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX "$build/benchmarks/gemm_bench" --benchmark_filter='gemm/fc1/(fwd|dx|dw)/openblas/1$' \
  --benchmark_min_time=0.3 --benchmark_repetitions=5 --benchmark_format=json 2>/dev/null > "$out/gemm_skx.json"

"$build/benchmarks/kernels_bench" --benchmark_filter='^adamw' --benchmark_min_time=0.3 --benchmark_repetitions=5 --benchmark_format=json 2>/dev/null > "$out/kernels.json"

peer_run() {  # peer_run <threads> <batch> <coretype or "">
  local t=$1 b=$2 ct=$3
  local envs=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t")
  [ "$t" -gt 1 ] && envs+=(OMP_WAIT_POLICY=passive)
  [ -n "$ct" ] && envs+=(OPENBLAS_CORETYPE="$ct")
  env "${envs[@]}" "$torch_bin" --threads "$t" --batch "$b" | grep '^RESULT' | sed "s/impl=libtorch/impl=libtorch${ct:+_$ct}/"
}

for b in $batches; do
  for t in 1 2; do
    for r in $(seq "$runs"); do
      "$sft_bin" --threads "$t" --batch "$b" --seed "$r" | grep '^RESULT' | tee -a "$out/runs.txt" | sed 's/^RESULT/run:/'
      if [ -n "$torch_bin" ]; then
        for ct in $peer_coretypes; do
          [ "$ct" = default ] && ct=""
          peer_run "$t" "$b" "$ct" | tee -a "$out/runs.txt" | sed 's/^RESULT/run:/'
        done
      fi
    done
  done
done

python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], sys.argv[2]
def bench(path):  # the best of the repetitions: other processes only ever slow a run down
    best = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") == "aggregate": continue
        name = b.get("run_name", b["name"])
        key = "FLOPS" if "FLOPS" in b else "BYTES"
        if name not in best or b[key] > best[name][key]: best[name] = b
    return best
g = bench(f"{out}/gemm_default.json"); g.update({k + "@SkylakeX": v for k, v in bench(f"{out}/gemm_skx.json").items()})
peak = g["fma_peak"]["FLOPS"] / 1e9
triad = g["triad"]["BYTES"] / 2**30
k = bench(f"{out}/kernels.json")
adamw = {t: k[f"adamw/{t}/real_time"]["BYTES"] / 2**30 for t in (1, 2) if f"adamw/{t}/real_time" in k}
print(f"FMA peak (1 core): {peak:.1f} GFLOP/s   triad (1 core): {triad:.1f} GiB/s   "
      + "   ".join(f"AdamW 10M params, {t} thr: {bw:.1f} GiB/s ({bw / triad:.2f} of triad)" for t, bw in adamw.items()))
print(f"{'GEMM fc1, 1 thread':<22}{'sft':>10}{'eigen':>10}{'openblas':>10}{'openblas SkylakeX':>19}  GFLOP/s")
gemm_ratio = []
for op in ("fwd", "dx", "dw"):
    v = lambda impl, suffix="": g.get(f"gemm/fc1/{op}/{impl}/1{suffix}", {}).get("FLOPS", float("nan")) / 1e9
    best_ob = max(v("openblas"), v("openblas", "@SkylakeX"))
    gemm_ratio.append(v("sft") / best_ob)
    print(f"{op:<22}{v('sft'):>10.1f}{v('eigen'):>10.1f}{v('openblas'):>10.1f}{v('openblas', '@SkylakeX'):>19.1f}")
rows = {}
for line in open(f"{out}/runs.txt"):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    rows.setdefault((kv["impl"], int(kv["batch"]), int(kv["threads"])), []).append(kv)
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
print(f"\n== reference workload: one epoch, medians of {runs} runs (wall s; CPU s = user+sys of all threads) ==")
print("peak share: GEMM GFLOP/s of the epoch (wall) over threads x the 1-core FMA peak; cpu share: the same per CPU second")
print(f"{'impl':<20}{'batch':>6}{'thr':>4}{'epoch s':>9}{'cpu s':>8}{'test acc':>9}{'RSS MB':>8}{'GFLOP/s':>9}{'peak share':>11}{'cpu share':>10}{'sft/this':>9}{'cpu ratio':>10}")
result = {}
for (impl, b, t), rs in sorted(rows.items(), key=lambda x: (x[0][1], x[0][2], x[0][0] != "sft", x[0][0])):
    wall, cpu = med(rs, "epoch_s"), med(rs, "cpu_s")
    sft = rows.get(("sft", b, t))
    gflop = float(sft[0]["gemm_gflop"]) if sft else float("nan")
    ratio = med(sft, "epoch_s") / wall if sft else float("nan")
    cratio = med(sft, "cpu_s") / cpu if sft else float("nan")
    share = gflop / wall / (peak * t)
    cshare = gflop / cpu / peak
    print(f"{impl:<20}{b:>6}{t:>4}{wall:>9.3f}{cpu:>8.3f}{med(rs, 'test_acc'):>9.4f}{med(rs, 'peak_rss_mb'):>8.0f}{gflop / wall:>9.1f}{share:>11.2f}{cshare:>10.2f}{ratio:>9.2f}{cratio:>10.2f}")
    if impl.startswith("libtorch"):  # against the faster libtorch configuration: the larger sft/peer ratio
        result[(b, t)] = max(result.get((b, t), 0.0), ratio)
    if impl.startswith("libtorch"):
        result[("cpu", b, t)] = max(result.get(("cpu", b, t), 0.0), cratio)
    if impl == "sft":
        result[("share", b, t)] = share
        result[("cshare", b, t)] = cshare
fields = []
for b in sorted({k[0] for k in result if len(k) == 2}, key=lambda b: b != 128):
    suffix = "" if b == 128 else f"_b{b}"
    for t in (1, 2):
        if (b, t) in result: fields.append(f"t{t}_ratio_vs_libtorch{suffix}={result[(b, t)]:.2f}")
    fields.append(f"t1_peak_share{suffix}={result.get(('share', b, 1), float('nan')):.2f}")
    fields.append(f"t1_cpu_peak_share{suffix}={result.get(('cshare', b, 1), float('nan')):.2f}")
    for t in (1, 2):
        if ("cpu", b, t) in result: fields.append(f"t{t}_cpu_ratio_vs_libtorch{suffix}={result[('cpu', b, t)]:.2f}")
    if ("share", b, 2) in result and ("share", b, 1) in result:
        s1 = rows[("sft", b, 1)]; s2 = rows[("sft", b, 2)]
        fields.append(f"t2_speedup{suffix}={med(s1, 'epoch_s') / med(s2, 'epoch_s'):.2f}")
fields.append(f"gemm_vs_openblas_t1={min(gemm_ratio):.2f}")
if 1 in adamw: fields.append(f"adamw_triad_share_t1={adamw[1] / triad:.2f}")
print("\nRESULT " + " ".join(fields))
PY
