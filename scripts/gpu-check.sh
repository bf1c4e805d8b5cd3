#!/usr/bin/env bash
# The GPU check, on an offline machine with an NVIDIA GPU: the kit's run.sh is this file
# (scripts/gpu-kit.sh copies it there). docs/gpu.md tells the whole story.
#   .gpu-kit/run.sh            the check: at most 8 minutes on one H100 with 16 CPU cores
#   .gpu-kit/run.sh --verify   only reassemble the wheels and check their sums (no GPU needed)
#   .gpu-kit/run.sh --dry-run  --verify, then the install step as `pip install --dry-run`
# The check:
#   1. stops at once, in one line, without an NVIDIA GPU or with another Python than the kit's;
#   2. reassembles every wheel from its pieces (part-NNN/) and checks size and sha256;
#   3. installs them with `pip --no-index` into a private virtualenv (KIT/env, which sees the
#      system's packages but never changes them; pip keeps a system package whose version
#      satisfies the service and takes the kit's wheel otherwise). pip comes from the kit's
#      wheel, else Python's own ensurepip, else the system's;
#   4. proves that ONNX Runtime runs a session on CUDAExecutionProvider (bench.gpu_proof:
#      the nodes ONNX Runtime's profiler saw run, and which CUDA libraries it loaded);
#   5. runs `python -m bench gpu` (a densenet121 with seeded random weights, exported there)
#      with its budget of BENCH_BUDGET_S; it writes its report after each phase, and a run
#      cut short (budget, timeout, Ctrl-C) leaves a report marked partial and fails the check;
#   6. leaves in OUT: gpu-reference.{md,json,png}, environment.txt, cuda-proof.json and
#      gpu-check.log (everything this script printed).
# Environment: OUT (default KIT/out), PYTHON (default python3), REPO (the project checkout;
# default the kit's parent folder), BENCH_BUDGET_S (default 360: bench gpu stops itself there,
# keeping what it measured; SIGINT BENCH_GRACE_S (default 30) later, SIGKILL 15 s after that).
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=${REPO:-$(dirname "$KIT")}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$KIT/out}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-360}
BENCH_GRACE_S=${BENCH_GRACE_S:-30}
MODE=${1:-check}

say() { echo "gpu-check: $*" >&2; }
fail() { echo "gpu-check: FAIL: $*" >&2; exit 1; }

case $MODE in
    check | --verify | --dry-run) ;;
    *) fail "unknown argument '$MODE' (expected nothing, --verify or --dry-run)" ;;
esac
[[ -f $KIT/manifest.tsv && -f $KIT/kit.env ]] || fail "no kit in $KIT (manifest.tsv, kit.env)"
# shellcheck source=/dev/null
source "$KIT/kit.env"

# 1. Before anything is written: a GPU, and the Python the wheels were chosen for.
if [[ $MODE == check ]]; then
    command -v nvidia-smi >/dev/null || fail "no NVIDIA GPU here: nvidia-smi is not installed"
    gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1) ||
        fail "no NVIDIA GPU here: nvidia-smi: ${gpus//$'\n'/ }"
    [[ -n $gpus ]] || fail "no NVIDIA GPU here: nvidia-smi lists none"
fi
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    fail "no Python at '$PYTHON' (set PYTHON)"
[[ $python_version == "$KIT_PYTHON" ]] ||
    fail "the kit holds wheels for Python $KIT_PYTHON; $PYTHON is $python_version (set PYTHON)"

# 2. Reassemble and verify.
assemble() {
    local file size sum parts pieces missing=() got
    rm -rf "$KIT/wheels"
    mkdir -p "$KIT/wheels"
    while IFS=$'\t' read -r file size sum _ _ parts; do
        [[ $file == file ]] && continue # the header
        IFS=, read -r -a pieces <<<"$parts"
        pieces=("${pieces[@]/#/$KIT/}")
        for got in "${pieces[@]}"; do
            [[ -f $got ]] || missing+=("${got#"$KIT"/}")
        done
        ((${#missing[@]} == 0)) || continue
        cat "${pieces[@]}" >"$KIT/wheels/$file"
        got=$(stat -c %s "$KIT/wheels/$file")
        [[ $got == "$size" ]] || fail "$file: $got bytes, the manifest says $size (copy its parts again)"
        got=$(sha256sum "$KIT/wheels/$file" | cut -d' ' -f1)
        [[ $got == "$sum" ]] || fail "$file: sha256 $got, the manifest says $sum (parts.sha256 finds the bad piece)"
    done <"$KIT/manifest.tsv"
    ((${#missing[@]} == 0)) ||
        fail "${#missing[@]} pieces are missing, e.g. $KIT/${missing[0]} (copy $(dirname "${missing[0]}")/)"
    say "$(($(wc -l <"$KIT/manifest.tsv") - 1)) wheels reassembled; sizes and sha256 as in manifest.tsv"
}
assemble
[[ $MODE == --verify ]] && exit 0

# 3. A private virtualenv over the system's packages, with a pip of its own: the kit's
# wheel (pip installs itself from it), else the one bundled with Python (ensurepip; on
# Debian, python3-venv), else the system's. `python -m venv` without --without-pip would
# need ensurepip, which a Debian Python without python3-venv lacks.
VENV=$KIT/env
rm -rf "$VENV"
"$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || fail "cannot create $VENV"
PY=$VENV/bin/python
pip_wheel=$(find "$KIT/wheels" -maxdepth 1 -name 'pip-*.whl' | head -n 1)
if [[ -n $pip_wheel ]]; then
    "$PY" "$pip_wheel/pip" install --isolated --no-index --disable-pip-version-check --quiet \
        --no-warn-script-location --ignore-installed "$pip_wheel" ||
        fail "cannot install pip from $pip_wheel"
elif ! "$PY" -m ensurepip --upgrade --default-pip >/dev/null 2>&1 &&
    ! "$PY" -m pip --version >/dev/null 2>&1; then
    fail "no pip: the kit holds no pip wheel, and $PYTHON has neither ensurepip nor pip"
fi
pip_run() { "$PY" -m pip "$@"; }
install=(install --isolated --no-index --find-links "$KIT/wheels" --disable-pip-version-check
    --no-warn-script-location -r "$KIT/requirements.txt")
if [[ $MODE == --dry-run ]]; then
    pip_run "${install[@]}" --dry-run || fail "pip install --dry-run from the kit failed (above)"
    exit 0
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
say "$(date -u +%FT%TZ): GPU ${gpus//$'\n'/, }; kit made $KIT_CREATED for cp$KIT_PYTHON $KIT_PLATFORM"
pip_run "${install[@]}" --quiet || fail "pip install from the kit failed (above)"
say "installed into $VENV"

# The nvidia-* wheels' libraries (the kit's or the system's) on the loader path, for
# ONNX Runtime's CUDA provider in this process and in the service it starts.
nvidia_libs=$("$PY" -c '
import glob, os, sys
found = [sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib"))) for base in sys.path]
print(":".join(dict.fromkeys(d for dirs in found for d in dirs)))')
export LD_LIBRARY_PATH=$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

environment() {
    echo "# nvidia-smi"
    nvidia-smi || true
    echo "# nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,pstate,clocks.max.sm \
        --format=csv || true
    echo "# CPU"
    nproc
    grep -m1 'model name' /proc/cpuinfo || true
    echo "# python"
    "$PY" -VV
    echo "# LD_LIBRARY_PATH"
    echo "$LD_LIBRARY_PATH"
    echo "# torch (the system's)"
    "$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda,
        "cuDNN", torch.backends.cudnn.version())' 2>&1 || true
    echo "# pip list (the private virtualenv over the system's packages)"
    pip_run list --isolated --disable-pip-version-check 2>&1 || true
}
environment >"$OUT/environment.txt"
say "environment: $OUT/environment.txt"

# 4. ONNX Runtime really runs on the GPU (one line and exit 1 if it does not).
cd "$REPO"
"$PY" -m bench.gpu_proof "$OUT/cuda-proof.json"

# 5. The measurements: bench gpu's defaults, sized for its budget of 6 minutes on one H100
# with 16 cores, so that the whole check fits in 8 (docs/gpu.md, "Time budget"). The
# timeout is only a backstop: bench gpu stops itself at its budget and writes what it has.
say "python -m bench gpu (budget $BENCH_BUDGET_S s)"
rm -f "$OUT"/gpu-reference.{md,json,png} # never an earlier run's report taken for this one's
started=$SECONDS
status=0
timeout --signal=INT --kill-after=15 "$((BENCH_BUDGET_S + BENCH_GRACE_S))" \
    "$PY" -m bench gpu --results-dir "$OUT" --budget-s "$BENCH_BUDGET_S" || status=$?
took=$((SECONDS - started))
if ((status != 0)); then
    [[ -f $OUT/gpu-reference.md ]] ||
        fail "python -m bench gpu exited $status after $took s, with no report (log: $OUT/gpu-check.log)"
    fail "python -m bench gpu exited $status after $took s; what it measured is in" \
        "$OUT/gpu-reference.md, marked partial (log: $OUT/gpu-check.log; server logs: $OUT/tmp)"
fi
rm -rf "$OUT/tmp"
say "bench gpu took $took s"
say "PASSED: $(cd "$OUT" && echo *)"
