#!/usr/bin/env bash
# Regenerates the per-format parity table in tests/reference/README.md: runs test_formats (which compares
# every file of tests/data/images/formats with the reference's pixels and patches and writes the table to
# the build folder) and puts the table between the README's markers. $1: the build folder (default build).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
"$build/test_formats" >/dev/null
python3 - "$build/parity_formats.md" tests/reference/README.md <<'PY'
import re, sys
table, readme = open(sys.argv[1]).read(), open(sys.argv[2]).read()
begin, end = "<!-- parity-table:begin -->", "<!-- parity-table:end -->"
readme = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: begin + "\n" + table + end, readme, flags=re.S)
open(sys.argv[2], "w").write(readme)
PY
echo "tests/reference/README.md: parity table updated"
