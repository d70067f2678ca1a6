#!/usr/bin/env bash
# The property tests (issue 22) with a long budget: every generated input must end in exit 0 with a sane result
# or exit 2 with one line naming the input - never a traceback, never a hang.
#
#   bash bench/fuzz.sh                 # 2,000 examples per property (SLIME_FUZZ_EXAMPLES), random seeds
#   SLIME_FUZZ_EXAMPLES=20000 bash bench/fuzz.sh tests/test_fuzz_inputs.py   # one file, longer
#
# CI runs the same tests with each file's small fixed budget (derandomised); here the examples are random, so each
# run explores new inputs. A failure prints Hypothesis's shrunk example; add it to the tests as a regression case.
# Property test files join FUZZ_FILES below (helper files may add theirs).
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIME_FUZZ_EXAMPLES="${SLIME_FUZZ_EXAMPLES:-2000}"
export SLIME_FUZZ_DEADLINE_MS="${SLIME_FUZZ_DEADLINE_MS:-60000}"
FUZZ_FILES=(tests/test_fuzz_inputs.py)
for extra in tests/test_captions_fuzz.py tests/test_output_gate.py; do
    [[ -f "$extra" ]] && FUZZ_FILES+=("$extra")
done
if [[ $# -gt 0 ]]; then FUZZ_FILES=("$@"); fi
start=$(date +%s)
echo "fuzz: ${SLIME_FUZZ_EXAMPLES} examples per property, deadline ${SLIME_FUZZ_DEADLINE_MS} ms, files: ${FUZZ_FILES[*]}"
python -m pytest -q -p no:cacheprovider -m hypothesis --hypothesis-show-statistics "${FUZZ_FILES[@]}"
echo "fuzz: finished in $(( $(date +%s) - start )) s"
