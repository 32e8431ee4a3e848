#!/usr/bin/env bash
# Installs the Debian packages the test-suite's real photos come from, when they are missing and apt is usable.
set -euo pipefail
missing=()
dpkg -s darknet >/dev/null 2>&1 || missing+=(darknet)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: Debian packages ${missing[*]} are missing (tests that need their photos will be skipped)." >&2
  exit 0
fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
