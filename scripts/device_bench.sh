#!/usr/bin/env bash
# The one prepared GPU run of scripts/bench_train_step.py: hg8 and hg2 (batch 32,
# 256x256) and Lightweight OpenPose (batch 32, 368x368), every row, few steps.
# Sized for about 6 minutes on one H200 (7.5 at most): each model's row set-ups
# stop at a budget (--setup-budget: the rows left say "skipped", the most
# wanted come first) and `timeout` backs it up. Untested on a GPU: none was
# lent when it was written; its commands ran on the CPU with --tiny.
#
# The device machine's image has python3 with CUDA builds of JAX and PyTorch,
# flax, optax, orbax, numpy, scipy and OpenCV, but not five packages that
# jaxpose imports (ml-collections, grain, array-record, portpicker,
# pycocotools), and it reaches no package index. So, once, here:
#   echo /.whl/ >> .git/info/exclude && scripts/device_bench.sh --prepare
# downloads their wheels for its Python 3.12 into .whl/ (about 5 MB); then the
# device tool runs, with carry ['.whl'] and timeout_s 540:
#   bash scripts/device_bench.sh
# which installs those wheels from .whl/ into /tmp/site (no index), checks the
# imports and the devices first, runs the three models and writes
# device_bench.md (the tables), bench_MODEL.json and bench_MODEL.log to $OUT.
#
# On a machine without a GPU, `scripts/device_bench.sh --tiny` runs the same
# commands at a size the CPU takes in minutes (PYTHON defaults to python3;
# here: PYTHON=.venv/bin/python). OUT defaults to out/device_bench.
set -uo pipefail
cd "$(dirname "$0")/.."

# The versions the project's environment has (pip list in .venv).
WHEELS=(ml_collections==1.1.0 grain==0.2.18 array_record==0.8.6 portpicker==1.6.0
        pycocotools==2.0.11)

if [[ "${1:-}" == "--prepare" ]]; then
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
fi

PYTHON=${PYTHON:-python3}
OUT=${OUT:-out/device_bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G '.whl/*.whl' >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

# Fails in seconds, not minutes, if a module is missing or no device is seen.
"$PYTHON" - <<'EOF' || exit 1
import jax, torch
import jaxpose.training.trainer  # noqa: F401 (every jaxpose import the benchmark needs)
print('jax', jax.__version__, jax.default_backend(), jax.devices()[0].device_kind,
      '| torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')
EOF
command -v nvidia-smi >/dev/null && nvidia-smi -L

if [[ "${1:-}" == "--tiny" ]]; then
  # (model, setup budget s, timeout s, arguments)
  TINY="--batch-size 2 --input-size 64 --quick-compile --torch-threads 1"
  RUNS=("hg8 240 400 $TINY --num-features 16 --hourglass-depth 2"
        "hg2 240 400 $TINY --num-features 16 --hourglass-depth 2" "lwop 240 400 $TINY")
  STEPS=(--steps 1 --repeats 1)
else
  # An XLA compile that starts before the budget runs to its end, hence the
  # limits' margin. Budgets: ~260 s of set-ups + ~3 x 30 s of start and timing.
  RUNS=("hg8 160 230 --batch-size 32" "hg2 50 110 --batch-size 32" "lwop 50 110 --batch-size 32")
  STEPS=(--steps 5 --repeats 3)
fi

: >"$OUT/device_bench.md"
for run in "${RUNS[@]}"; do
  read -r model budget limit args <<<"$run"
  echo "== $model: $args (set-up budget $budget s, limit $limit s)"
  # A torch.compile stopped at the budget can leave a truncated kernel in
  # Inductor's cache, which the next model's would load: one cache each.
  # shellcheck disable=SC2086  # $args is a list of arguments
  TORCHINDUCTOR_CACHE_DIR="/tmp/inductor_${model}_$$" \
  timeout -k 10 "$limit" "$PYTHON" scripts/bench_train_step.py --model "$model" $args \
    "${STEPS[@]}" --setup-budget "$budget" --json "$OUT/bench_$model.json" \
    2>&1 | tee "$OUT/bench_$model.log"
  status=${PIPESTATUS[0]}
  # The header and the table: the lines from the table's caption on.
  sed -n "/^$model, batch/,\$p" "$OUT/bench_$model.log" >>"$OUT/device_bench.md"
  [[ $status -eq 0 ]] || echo "$model: exit status $status" | tee -a "$OUT/device_bench.md"
  echo >>"$OUT/device_bench.md"
done
echo "== all tables"
cat "$OUT/device_bench.md"
