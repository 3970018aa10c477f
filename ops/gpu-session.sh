#!/usr/bin/env bash
# One short session on a borrowed GPU machine (about 15 minutes of device time in all, start
# included): the smoke of every family in every documented setting (issue 19), then the
# speed benchmark of full-size random-weight models built from pipeline/configs (issues 14,
# 17). Everything lands as JSON and logs under $OUT; each step has its own time limit, so a
# hang costs that step only.
#
# Here first:   make gpu-wheels          (fills the git-ignored .whl/, about 50 MB)
# Then:         run(command="bash ops/gpu-session.sh", carry=[".whl"], timeout_s=330)
#
# BUDGET (seconds, default 300) bounds the whole script, so a 15-minute lease has room for the
# machine's start and one rerun; BUDGET=360 adds 2 takes of ltx-2b back to back against one
# batched call (issue 15); BUDGET=600 also Wan 14B (57 GB of bf16 weights to build).
#
# The machine has torch (CUDA), transformers, accelerate and peft, no registry and no ffmpeg
# program: the wheels go into .gpu-site with --no-deps, and PyAV's bundled libraries encode
# (pipeline/pyav_encode.py).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
started=$(date +%s)
left() { echo $(( ${BUDGET:-300} - ($(date +%s) - started) )); }

python -m pip install -q --no-index --no-deps --target .gpu-site .whl/*.whl > "$OUT/pip.log" 2>&1
export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python - > "$OUT/versions.json" 2>&1 <<'PY'
import json, torch, diffusers, transformers, av
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                  "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                  "av": av.__version__, "gpu": torch.cuda.get_device_name(0)}))
PY

step() {  # step NAME SECONDS COMMAND...: run it within its limit and what time is left
    local name=$1 limit=$2; shift 2
    local budget; budget=$(left)
    (( limit > budget )) && limit=$budget
    if (( limit < 30 )); then echo "$name: skipped, ${budget}s left" >> "$OUT/steps.txt"; return; fi
    local t0; t0=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $(( $(date +%s) - t0 ))s (limit ${limit}s)" >> "$OUT/steps.txt"
}

step smoke 150 python -m bench.smoke --budget 100 --out "$OUT/smoke.json"
step gpu-ltx-2b 130 python -m bench.gpu --models ltx-2b --repeats 1 --out "$OUT/gpu-ltx-2b.json"
step gpu-takes 60 python -m bench.gpu --models ltx-2b --takes 2 --takes-only --steps 4 --out "$OUT/gpu-takes.json"
(( $(left) >= 200 )) && step gpu-wan-14b 280 python -m bench.gpu --models wan-14b --repeats 1 --steps 2 --out "$OUT/gpu-wan-14b.json"
cat "$OUT/steps.txt"
