#!/usr/bin/env bash
# One run on a lent GPU machine (see ../shared/device/README.md): correctness first, then
# every figure the fast-path issue asks for, written under $OUT. Build here first:
#   ../shared/device/fetch-vulkan-loader.sh && cargo build --release
# then run through the device tool with carry [".gl", "target/release/tessera"]:
#   bash tools/device_run.sh        (timeout_s 560: the steps below add up to 520 s at most)
# Each step has its own time limit so one slow step cannot eat the session; a step that
# fails or times out is recorded and the next one still runs.
set -u
OUT=${OUT:-/tmp/tessera-device}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=/tmp
bin=./target/release/tessera

step() { # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: rc=$rc in $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
    tail -3 "$OUT/$name.log"
}

date -u +%FT%TZ >"$OUT/date.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv >"$OUT/nvidia-smi.txt" 2>&1
export TESSERA_TUNE_CACHE="$OUT/tuning.json"
step info 30 $bin info --json
step check 140 $bin check
# Scalar vs cooperative paths timed and checked; bench and the models then run on the winners.
step tune 30 $bin tune
step bench 200 $bin bench --json "$OUT/bench.json"
step models 120 $bin bench --models --json "$OUT/models.json"
