#!/usr/bin/env bash
# Installs the Debian packages Hato needs to build, run and test, when they
# are missing. Idempotent: installs nothing when everything is there.
set -euo pipefail

packages=(
	build-essential cmake pkg-config
	libevent-dev libssl-dev libc-ares-dev libmariadb-dev libiniparser-dev
	libgmime-3.0-dev libcmocka-dev
	mariadb-server mariadb-client openssl
	python3 python3-pymysql python3-dkim swaks openssl
	postfix
	clang libclang-rt-14-dev cppcheck
	chromium python3-prometheus-client fonts-ipafont-gothic
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix is a test peer (the MTA in front of intake) and the benchmark's
# reference; it must not be set up as this machine's mail system.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
