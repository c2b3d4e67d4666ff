#!/usr/bin/env bash
# Runs every test, on a fresh Debian 12 machine, as root: installs the pinned
# tools, checks formatting and go vet, then runs the unit tests and the
# integration tests (the real lifecycle, Nix, bubblewrap and proot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "==> go vet"
go vet ./...
echo "==> go test"
go test -count=1 -timeout 60m ./...
