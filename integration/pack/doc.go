// Package pack holds the end-to-end test with the real pack CLI: the
// buildpack packaged by scripts/package.sh into a .cnb, a builder made by
// `pack builder create`, and `pack build --publish` into a loopback registry,
// with a Docker daemon of its own (no bridge, no iptables rules).
//
// The test needs root and the tools of `scripts/install-tools.sh
// --with-docker` (pack, crane, the lifecycle, Debian's docker.io). Nothing
// reaches the internet: the Nix release and the proot packages come from
// harness.OfflineDependencies.
package pack
