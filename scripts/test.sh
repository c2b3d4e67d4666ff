#!/usr/bin/env bash
# Runs every test, on a fresh Debian 12 machine, as root: installs the pinned
# tools, checks formatting and go vet, then runs the unit tests and the
# integration tests (the real lifecycle, Nix, bubblewrap and proot; pack
# with a Docker daemon of the tests' own), and scans for known
# vulnerabilities with govulncheck.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
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
echo "==> go test -fuzz"
# The parsers of what comes from outside (a bucket's narinfos, NARs and app
# pointers, .slugexclude, the launcher's settings, nix-store --dump-db, a
# derivation's structured attributes), each fuzzed for a bounded number of inputs. go test ./... below runs their seed corpora
# (testdata/fuzz/) as plain tests; a failing input found here is written
# there, to be kept as a regression seed once fixed.
# Each target runs for a number of inputs, about 10 s here: a duration
# (-fuzztime 12s) races Go's fuzzing coordinator at its deadline and can
# fail with "context deadline exceeded" and no failing input (Go issue
# 75804, fixed in Go 1.27). NIXCNB_FUZZTIME=30s (or 50000x) overrides
# every target's budget.
fuzz_start=$SECONDS fuzzed=0
for target in binarycache:FuzzNarinfo:60000x narfile:FuzzRestore:6000x binarycache:FuzzAppPointer:60000x \
  slugexclude:FuzzRules:250000x launch:FuzzReadConfig:15000x nixcli:FuzzParseRegInfo:200000x \
  relocbuild:FuzzStructuredAttrs:40000x; do
  IFS=: read -r pkg name budget <<<"$target"
  budget=${NIXCNB_FUZZTIME:-$budget}
  echo "    go test -run '^\$' -fuzz '^$name\$' -fuzztime $budget ./$pkg/"
  if ! out=$(go test -run '^$' -fuzz "^$name\$" -fuzztime "$budget" "./$pkg/" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  echo "    ${out##*$'\n'}"
  fuzzed=$((fuzzed + 1))
done
echo "    fuzzed $fuzzed targets in $((SECONDS - fuzz_start)) s"
echo "==> govulncheck"
# govulncheck needs the Go vulnerability database. Where the official one
# cannot be reached, the module proxy serves a copy as the module
# golang.org/x/vulndb, at this pinned version (the proxy refuses its
# version list: bump the date and hash here, one line); its data/osv folder
# is a database govulncheck reads as it is. The scan fails on findings in
# reached code.
vulndb_version=v0.0.0-20261105234957-e22db6528018
vulndb=${GOVULNDB:-https://vuln.go.dev}
if ! curl -fsS --max-time 20 -o /dev/null "$vulndb/index/db.json" 2>/dev/null; then
  vulndb_dir=$(cd "$(mktemp -d)" && go mod download -json "golang.org/x/vulndb@$vulndb_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $vulndb_dir/data/osv ]] || { echo "govulncheck: the module golang.org/x/vulndb@$vulndb_version has no data/osv folder" >&2; exit 1; }
  vulndb=file://$vulndb_dir/data/osv
fi
echo "govulncheck $("$tools/govulncheck" -version 2>/dev/null | sed -n 's/^Scanner: //p'), $(go version | cut -d' ' -f3), database $vulndb"
"$tools/govulncheck" -db "$vulndb" ./...
echo "==> go test"
# What the integration packages share, made once here: go test runs the
# packages in parallel, and two harnesses must not race to create the cnb
# user or to write the Nix releases they serve. Two releases: Nix 2.34
# (Debian sid's, pinned in scripts/nix-release/), the tests' default, and
# Debian 12's 2.8, the oldest the buildpack supports.
id -u cnb >/dev/null 2>&1 || useradd -m -u 1001 -U cnb
for v in 2.34 2.8; do
  release_dir=$(dirname "$tools")/nix-release-$v
  if [[ ! -f $release_dir/nix-release.env ]]; then
    echo "==> Making the Nix $v release in $release_dir"
    start=$SECONDS
    scripts/make-nix-release.sh --nix "$v" "$release_dir" >/dev/null
    echo "    made in $((SECONDS - start)) s"
  fi
done
# The arm64 test (integration/arm64, under qemu-user) installs sid's Nix
# 2.34 for arm64, pinned in scripts/nix-release/sid-arm64.txt.
release_dir=$(dirname "$tools")/nix-release-2.34-arm64
if [[ ! -f $release_dir/nix-release.env ]]; then
  echo "==> Making the Nix 2.34 arm64 release in $release_dir"
  start=$SECONDS
  scripts/make-nix-release.sh --nix 2.34 --arch arm64 "$release_dir" >/dev/null
  echo "    made in $((SECONDS - start)) s"
fi
echo "==> go test ./... (integration tests on Nix $(sed -n 's/^NIX_RELEASE_VERSION=//p' "$(dirname "$tools")/nix-release-2.34/nix-release.env"))"
rc=0
NIXCNB_NIX_VERSION=2.34 go test -count=1 -timeout 60m ./... || rc=$?
# The build phase's unit tests, with fakes for Nix, the transport and the
# bucket (the integration tests above run the real ones), and what they
# cover.
echo "==> go test -cover ./build/"
go test -count=1 -cover ./build/ || rc=$?
# On the oldest supported Nix, what every user relies on: detect, build,
# run and an unchanged rebuild; a flake; a failing build explained; the
# S3 push and restore; each store runtime.
oldest='^(TestBuildRunAndRebuild|TestFlakeBuildsWithNixBuild|TestFailingNixBuildsSayWhy|TestSharingThroughS3|TestStoreRuntimes|TestBuildsWhereNothingIsAllowed)$'
echo "==> go test ./integration/ -run '$oldest' (on Nix $(sed -n 's/^NIX_RELEASE_VERSION=//p' "$(dirname "$tools")/nix-release-2.8/nix-release.env"))"
NIXCNB_NIX_VERSION=2.8 go test -count=1 -timeout 30m -run "$oldest" ./integration/ || rc=$?
exit "$rc"
