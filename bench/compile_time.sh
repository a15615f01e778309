#!/usr/bin/env bash
# Compile time and peak memory of an app's files: one that uses the API (pix2struct.hpp), and the one that
# defines PIX2STRUCT_IMPLEMENTATION (Eigen, the codecs and the model, compiled once per app), at -O2 with
# g++ and clang++. Medians of 3 runs.
#
#   bash bench/compile_time.sh [INCLUDE_DIR]     # default: this checkout's include/
# Before/after a change: git archive REV include kernels | tar -x -C /tmp/rev && bash bench/compile_time.sh /tmp/rev/include
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
inc=$(cd "${1:-$root/include}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/api.cpp" <<'CPP'
#include <pix2struct/pix2struct.hpp>
#include <iostream>
int main(int argc, char** argv) {
    if (argc != 4) return 2;
    auto pipe = pix2struct::Pipeline::load(argv[1], {.threads = 2});
    std::cout << pipe.ask(pix2struct::load_image(argv[2]), argv[3]).text << "\n";
}
CPP
printf '#define PIX2STRUCT_IMPLEMENTATION\n#include <pix2struct/pix2struct.hpp>\n' > "$work/impl.cpp"
# The flags the package gives (pkg-config's, from this checkout), without our include dir.
deps="$(pkg-config --cflags eigen3 stb sentencepiece nlohmann_json libjpeg libpng libwebpdemux freetype2) -DPIX2STRUCT_WITH_FREETYPE"
printf '%-9s %-22s %9s %12s\n' compiler file seconds "peak MB"
for cxx in g++ clang++; do
  for f in api impl; do
    secs=() mb=()
    for _ in 1 2 3; do
      # shellcheck disable=SC2086
      out=$( { /usr/bin/time -f "%e %M" "$cxx" -std=c++20 -O2 -I"$inc" $deps -c "$work/$f.cpp" -o "$work/$f.o"; } 2>&1 | tail -1)
      secs+=("${out% *}") mb+=("$(( ${out#* } / 1024 ))")
    done
    med() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
    printf '%-9s %-22s %9s %12s\n' "$cxx" "$f.cpp" "$(med "${secs[@]}")" "$(med "${mb[@]}")"
  done
done
