#!/usr/bin/env bash
# The Python package as a user gets it: a fresh venv with numpy and pytest
# only, `pip install` of this tree (meson-python builds the C library into
# the package; the index supplies the build tools), then python/tests (not
# the `model` tests) against the installed package, from outside the tree.
# pytest's output is also written to LOG for tools/test_summary.py.
#   tools/python_venv_check.sh LOG
set -euo pipefail
log=$(realpath "$1")
: >"$log" # a run that breaks before pytest leaves no count behind (test_summary.py: 1 failure)
src=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
py="$scratch/venv/bin/python"
"$py" -m pip install -q numpy pytest
"$py" -m pip install -q "$src"
cd "$scratch"
"$py" -c 'import prescore, sys
path = prescore.library_path()
assert path.startswith(sys.prefix), "not the installed library: " + path
print("prescore %s, library %s" % (prescore.version(), path))'
"$py" -m pytest -q -m "not model" -p no:cacheprovider "$src/python/tests" 2>&1 | tee "$log"
