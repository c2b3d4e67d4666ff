#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine, as root: installs the pinned
# tools, builds fixtures/hello-web into an image with the real CNB lifecycle
# and this buildpack, runs the image's web process and prints its answer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
scripts/install-tools.sh
go run ./integration/demo
