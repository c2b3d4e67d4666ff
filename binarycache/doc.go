// Package binarycache reads and writes Nix's binary-cache layout in any
// Objects (an S3 bucket through package s3objects), so that a closure built
// once can be shared between builds and machines in a format Nix itself
// reads (`nix copy --from s3://…`, `file://…` of a copy, or an `http://`
// substituter served by Cache.Handler). It returns what Push and Fetch did
// as statistics and prints only progress lines; summing up is the caller's.
//
// The layout is Nix's own:
//
//	nix-cache-info                  StoreDir, WantMassQuery, Priority
//	<hash>.narinfo                  one per store path, <hash> its 32-char hash part
//	nar/<filehash>.nar[.zst|.xz]    the (compressed) NAR, named by its own sha256
//	apps/<name>.json                this package's app pointers (ignored by Nix)
//
// Writers upload every NAR before its narinfo, and a narinfo only after the
// narinfos of its references, so a reader that sees a narinfo can fetch the
// whole closure. Readers verify FileHash, NarHash and, when trusted keys are
// given, an ed25519 signature in Nix's key format before a path is renamed into
// place.
package binarycache
