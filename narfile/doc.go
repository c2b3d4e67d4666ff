// Package narfile reads and writes Nix ARchives (NAR), the serialisation
// of a store path that binary caches hold and Nix hashes: packing a path
// into a compressed NAR with the hashes a narinfo needs, decompressing,
// unpacking a NAR into a folder with the checks Nix makes (only archives
// Nix would write, nothing outside the folder, Nix's canonical modes and
// times), and the size of a path's NAR without reading its files. The
// binary cache and the relocated store runtime's built-in fetcher use it.
package narfile
