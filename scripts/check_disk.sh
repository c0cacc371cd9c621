#!/usr/bin/env bash
# Warns, before a long build, when the disk holding DIR has less than GB gigabytes free:
# a build that runs out of space fails late and names no cause ("No space left on device").
set -euo pipefail
dir=${1:-.}
need_gb=${2:-8}
free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
free_gb=$((free_kb / 1024 / 1024))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "warning: only ${free_gb} GB free on the disk holding $(cd "$dir" && pwd); this step needs about ${need_gb} GB" >&2
  echo "warning: (make clean frees the build and the tools; df -h shows what else is using the disk)" >&2
fi
