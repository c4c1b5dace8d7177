#!/usr/bin/env bash
# apt_install PACKAGE…: installs Debian packages quietly (with sudo when not
# root), refreshing the package lists only when the first try fails. Sourced
# by tests/scripts/deps.sh, deploy/check.sh and tests/bench/common.sh.

apt_install() {
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "installing system packages: $*"
    local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@")
    "${install[@]}" >/dev/null 2>&1 ||
        { "${sudo[@]}" apt-get update -qq && "${install[@]}" >/dev/null; }
}
