#!/usr/bin/env bash
# Runs every test, on a fresh Debian 12 machine, as root: installs the pinned
# tools, checks formatting and go vet, then runs the unit tests and the
# integration tests (the real lifecycle, Nix, bubblewrap and proot; pack
# with a Docker daemon of the tests' own), and scans for known
# vulnerabilities with govulncheck where its database can be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh --with-docker
tools=${NIXCNB_TOOLS:-/var/cache/nixcnb-tools/bin}

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "==> go vet"
go vet ./...
echo "==> govulncheck"
# govulncheck needs the Go vulnerability database (GOVULNDB: the official
# one, a mirror, or a file:// copy in its v1 layout). No copy comes through
# the Go module proxy, so where the database is unreachable the scan is
# skipped, and says so.
vulndb=${GOVULNDB:-https://vuln.go.dev}
if curl -fsS --max-time 20 -o /dev/null "$vulndb/index/db.json" 2>/dev/null; then
  "$tools/govulncheck" -db "$vulndb" ./...
else
  echo "govulncheck: SKIPPED, nothing was scanned: the vulnerability database $vulndb cannot be reached from this machine. Set GOVULNDB to a reachable mirror or a file:// copy to scan."
fi
echo "==> go test"
# What the integration packages share, made once here: go test runs the
# packages in parallel, and two harnesses must not race to create the cnb
# user or to write the one Nix release they serve.
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb
release_dir=$(dirname "$tools")/nix-release
[[ -f $release_dir/nix-release.env ]] || scripts/make-nix-release.sh "$release_dir" >/dev/null
# -cover prints each package's statement coverage (build/ is unit-tested
# with fakes for Nix, the transport and the bucket; the integration tests
# run the real ones).
go test -count=1 -cover -timeout 60m ./...
