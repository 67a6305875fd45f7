#!/usr/bin/env bash
# Run the compiled twins' tests against a build of sipcore._speedups with
# AddressSanitizer and UndefinedBehaviorSanitizer: any out-of-bounds read
# or write, use after free or undefined arithmetic on the generated and
# mutated inputs stops the run with a report. Python allocates with plain
# malloc here (PYTHONMALLOC=malloc) so that ASan sees every object.
#
# Usage: bash scripts/sanitize-speedups.sh [python]   (default .venv/bin/python)
# The normal build is put back afterwards, whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${1:-.venv/bin/python}
so=$("$python" -c 'import sipcore._speedups as s; print(s.__file__)')
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
backup=$(mktemp)
cp "$so" "$backup"
trap 'cp "$backup" "$so"; rm -f "$backup"' EXIT
gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Wno-unused-parameter -Werror -fPIC -shared -I"$include" \
    src/sipcore/_speedups.c -o "$so"
PYTHONMALLOC=malloc \
    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0 \
    "$python" -m pytest -q -p no:cacheprovider \
    tests/test_speedups.py tests/test_robustness.py tests/test_torture.py tests/test_hashing.py
