#!/usr/bin/env bash
# The README's leakage numbers: every offline victim on the 125 test photos, then captions at N=300.
set -euo pipefail
DATA=${DATA:-../shared/data/flickr8k_subset1000}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
for v in lite0 lite1; do
  slime eval --data "$DATA" --split test --victim $v --n-align 10,30,100,300,700 --k 1,5,10,20 --no-progress \
    --output "$OUT/eval_$v.json" > "$OUT/eval_$v.txt"
done
# lite2 is the attacker's own image tower: no alignment, the oracle (N does not matter).
slime eval --data "$DATA" --split test --victim lite2 --n-align 300 --k 1,5,10,20 --no-progress \
  --output "$OUT/eval_lite2.json" > "$OUT/eval_lite2.txt"
for w in consensus local; do
  slime eval --data "$DATA" --split test --victim lite0 --n-align 300 --k 10 --caption $w --no-progress $([ $w = local ] && echo --final-caption objects,relations) \
    --output "$OUT/captions_lite0_$w.json" > "$OUT/captions_lite0_$w.txt"
done
slime eval --data "$DATA" --split test --victim lite0 --n-align 300 --k 10 --caption local --caption-mode tags+neighbours \
  --no-progress --output "$OUT/captions_lite0_local_tags+neighbours.json" > "$OUT/captions_lite0_local_tags+neighbours.txt"
