# Sourced by the scripts, from the repository's root: every go command runs
# on the Go release go.mod requires (its `go` line, which go mod tidy keeps),
# which the Go module proxy serves. A Go whose go.env says GOTOOLCHAIN=local (Debian's, this
# machine's) would otherwise build with itself, and the buildpack's static
# binaries carry that standard library into every image: govulncheck in
# scripts/test.sh says which fixes the pinned one has.
GOTOOLCHAIN=go$(sed -n 's/^go //p' go.mod)
export GOTOOLCHAIN
