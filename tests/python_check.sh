#!/bin/sh
# The Python module of this tree (python/prescore) against the library just
# built: its pytest suite (python/tests, without the `model` tests) with
# PYTHONPATH and PRESCORE_LIB pointing into the tree. .ci/run also runs the
# suite on the pip-installed package in a fresh venv (tools/python_venv_check.sh).
# Exit 77 (skipped): numpy or pytest not installed for python3.
#   python_check.sh LIBRARY SOURCE_DIR
set -eu
lib=$1
src=$2
python3 -c "import numpy, pytest" 2>/dev/null || {
    echo "numpy or pytest is not installed for python3: skipped"
    exit 77
}
PYTHONPATH="$src/python" PRESCORE_LIB="$lib" exec python3 -m pytest -q -m "not model" \
    -p no:cacheprovider "$src/python/tests"
