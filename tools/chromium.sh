#!/usr/bin/env bash
# Print the path of a Chromium for the studio's browser test. The system's /usr/bin/chromium when
# it has one; otherwise Debian's chromium package and the libraries this machine lacks, fetched
# with apt-get into DEST and unpacked there with dpkg-deb: no root, no change to the system.
#
# Usage: tools/chromium.sh [DEST]     (default .venv/chromium; `make test` calls it)
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo /usr/bin/chromium
    exit 0
fi
dest=$(mkdir -p "${1:-.venv/chromium}" && cd "${1:-.venv/chromium}" && pwd)
if [ ! -x "$dest/chromium" ]; then
    apt=(apt-get -qq -o "Dir::State::Lists=$dest/apt/lists" -o "Dir::Cache=$dest/apt/cache"
         -o Debug::NoLocking=1 -o "APT::Sandbox::User=$(id -un)")
    mkdir -p "$dest/apt/lists/partial" "$dest/apt/cache/archives/partial" "$dest/debs"
    "${apt[@]}" update >&2
    # what installing chromium would add to this machine, in apt's own resolution
    mapfile -t packages < <("${apt[@]}" -s install --no-install-recommends chromium \
        | awk '/^Inst /{print $2}')
    (cd "$dest/debs" && "${apt[@]}" download "${packages[@]}" >&2)
    rm -rf "$dest/root"
    for deb in "$dest"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
    libraries=$(find "$dest/root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
    cat > "$dest/chromium.part" <<EOF
#!/bin/sh
# Debian's Chromium unpacked by tools/chromium.sh, with the libraries unpacked beside it.
export LD_LIBRARY_PATH="$libraries\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$dest/root/usr/lib/chromium/chromium" "\$@"
EOF
    chmod +x "$dest/chromium.part"
    mv "$dest/chromium.part" "$dest/chromium"
    rm -rf "$dest/debs" "$dest/apt/cache"
fi
echo "$dest/chromium"
