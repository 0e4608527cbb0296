#!/usr/bin/env bash
# Installs the Debian packages bitllm builds against, only when one is missing.
set -euo pipefail
# clang + libclang-rt-14-dev (libFuzzer and the sanitizer runtimes; only recommended by clang, so
# named here) build the fuzzing tree of `make fuzz`.
pkgs=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev libcjson-dev libpcre2-dev
      libomp-dev libmicrohttpd-dev curl python3 gnuplot-nox clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the test of the official openai client (tests/cli_openai.sh); a node that
# came from elsewhere (and brings its own npm) is fine
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
