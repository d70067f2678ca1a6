#!/usr/bin/env bash
# The README's leakage numbers: every offline victim on the 1,000 Flickr8k test photos, captions at N=300, two
# shift rows (the 125 full-size test photos: resolution; 100 COCO photos: domain) and the defence curves.
# LOCAL=1 also scores the SmolLM2 writer (about 45 min on 2 cores for 1,000 photos; LOCAL_LIMIT=250 to shorten).
set -euo pipefail
SHARED=${SHARED:-../shared/data}
DATA=${DATA:-$SHARED/flickr8k_8k_224}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
ev() { slime eval --split test --no-progress "$@"; }
for v in lite0 lite1; do
  ev --data "$DATA" --victim $v --n-align 10,30,100,300,1000,3000 --k 1,5,10,20 \
    --output "$OUT/eval_$v.json" > "$OUT/eval_$v.txt"
done
# lite2 is the attacker's own image tower: no alignment, the oracle (N does not matter).
ev --data "$DATA" --victim lite2 --n-align 300 --k 1,5,10,20 --output "$OUT/eval_lite2.json" > "$OUT/eval_lite2.txt"
for w in mbr consensus; do
  ev --data "$DATA" --victim lite0 --n-align 300 --k 10 --caption $w --output "$OUT/captions_lite0_$w.json" \
    > "$OUT/captions_lite0_$w.txt"
done
if [ "${LOCAL:-0}" = 1 ]; then
  lim=$([ -n "${LOCAL_LIMIT:-}" ] && echo "--limit $LOCAL_LIMIT" || true)
  ev --data "$DATA" --victim lite0 --n-align 300 --k 10 --caption local --final-caption objects,relations $lim \
    --output "$OUT/captions_lite0_local.json" > "$OUT/captions_lite0_local.txt"
fi
# Shift rows: the same attacker and pool (--pool-data), other test photos.
ev --data "$SHARED/flickr8k_subset1000" --pool-data "$DATA" --victim lite0 --n-align 300 --k 10 --caption mbr \
  --output "$OUT/shift_fullsize_lite0.json" > "$OUT/shift_fullsize_lite0.txt"
if [ -d "$SHARED/coco_val2017_224" ]; then
  ev --data "$SHARED/coco_val2017_224" --pool-data "$DATA" --victim lite0 --n-align 300 --k 10 --caption mbr \
    --output "$OUT/shift_coco_lite0.json" > "$OUT/shift_coco_lite0.txt"
fi
python bench/defence_curves.py --data "$DATA" > "$OUT/defence_curves_lite0.txt"
python bench/readme_tables.py > "$OUT/readme_tables.md"
