#!/usr/bin/env bash
# Installs the Debian packages flatbucket's build and tests need, if any are
# missing. Idempotent: does nothing (and touches no network) when all are there.
set -euo pipefail

packages=(ostree flatpak gnupg busybox-static libostree-dev pkg-config python3 python3-venv curl nodejs)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
