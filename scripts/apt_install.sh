#!/usr/bin/env bash
# Installs Debian packages (with sudo unless root), updating the package lists only when the
# first attempt fails. usage: scripts/apt_install.sh PACKAGE...
set -euo pipefail
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
echo "installing $* (Debian packages)"
$SUDO apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
  { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends "$@" >/dev/null; }
