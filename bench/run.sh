#!/bin/sh
# run.sh — `make bench`: every benchmark, with this machine's figures.
set -eu
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
if [ -x build/bench/bench_compile ]; then
  echo "== compile"
  build/bench/bench_compile
fi
echo "== apply"
sh bench/apply.sh build/weir
echo "== runs"
sh bench/runs.sh build/weir
sh bench/sql.sh build/weir
echo "== against graphile-worker (the same machine, in turn)"
sh bench/compare.sh build/weir
echo "== train (weir vs scikit-learn)"; sh bench/train.sh build/bench/train
echo "== gpu (train.mlp and infer.batch throughput, 1M synthetic rows, CPU against CUDA)"
build/bench/gpu 1000000 1
