#!/usr/bin/env bash
# Debian packages the project needs at run and test time; installs only what is missing.
#   espeak-ng   synthetic Hindi speech (corpus, tests)
#   libsndfile1 soundfile's codec library (the wheel bundles one; this keeps OGG/FLAC working everywhere)
#   libb64-0d   needed by the perf_analyzer binary
#   docker-compose  validates docker-compose.yml without a Docker engine (tests)
#   ffmpeg      the gateway decodes MP3, M4A and WebM uploads with it
#   chromium chromium-driver  the gateway's web page is tested in headless Chromium (selenium)
#   fonts-lohit-deva  a Devanagari font, so that the page's screenshots show Hindi, not empty boxes
# `scripts/system-packages.sh containers` adds what `make compose-check` needs without a Docker daemon:
#   podman podman-compose  the container engine and its compose tool
#   runc                   podman's runtime here (crun refuses hosts whose cgroups run in hybrid mode)
#   netavark aardvark-dns iptables  compose networks whose containers find each other by name
#                          (netavark sets the bridge up with iptables and fails without it)
#   mmdebstrap             the Debian base image when no image registry is reachable
#   cmake, g++, libboost-*-dev, zlib1g-dev  compile `pip install kenlm` and KenLM's lmplz/build_binary (`vaani lm`)
set -euo pipefail
packages=(espeak-ng libsndfile1 libb64-0d docker-compose ffmpeg chromium chromium-driver fonts-lohit-deva
    cmake g++ zlib1g-dev libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev)
if [ "${1:-}" = containers ]; then
    packages+=(podman podman-compose runc netavark aardvark-dns iptables mmdebstrap uidmap)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "missing system packages: ${missing[*]} (no apt-get here: install them with your package manager)" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
