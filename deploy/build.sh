#!/usr/bin/env bash
# Configure and build into a build directory. Usage: deploy/build.sh [BUILD_DIR] [extra cmake args]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$top/build}
shift || true
cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVGPU_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
