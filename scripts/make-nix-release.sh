#!/usr/bin/env bash
# Makes a Nix release tarball in the official layout from Debian's nix-bin,
# for machines that cannot reach releases.nixos.org (the tests and the demo).
#
#   nix-<version>-<system>/
#     store/<hash>-nix-<version>-deps/lib/...   ld.so, libc and every library nix links
#     store/<hash>-nix-<version>/bin/nix        patched to load them from the store
#     .reginfo                                  the store database entries (nix-store --load-db)
#     install                                   a note: the buildpack installs it, not this script
#
# Usage: scripts/make-nix-release.sh OUT_DIR
# Prints the tarball's path and sha256, and writes them to OUT_DIR/nix-release.env.
set -euo pipefail

out=${1:?usage: make-nix-release.sh OUT_DIR}
mkdir -p "$out"; out=$(cd "$out" && pwd)
for tool in nix-store patchelf xz; do
  command -v "$tool" >/dev/null || { echo "make-nix-release: $tool is missing (run scripts/install-tools.sh)" >&2; exit 1; }
done

version=$(dpkg-query -W -f='${Version}' nix-bin | sed 's/-.*//')  # nix-store --version would create /nix
system=$(uname -m)-linux
name=nix-$version-$system
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
root=$work/root   # a chroot store: paths are /nix/store/..., files live under $root
export NIX_CONFIG="build-users-group ="

# 1. The libraries, with the loader, in a store path of their own.
deps=$work/nix-$version-deps
mkdir -p "$deps/lib"
ldd /usr/bin/nix | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
  cp -L "$lib" "$deps/lib/$(basename "$lib")"
done
for lib in "$deps"/lib/libnix*.so; do patchelf --set-rpath '$ORIGIN' "$lib"; done
deps_path=$(nix-store --store "$root" --add "$deps")

# 2. Nix itself, loading its libraries from that path: no wrapper, no /bin/sh.
nix=$work/nix-$version
mkdir -p "$nix/bin" "$nix/libexec/nix"
cp /usr/bin/nix "$nix/bin/nix"
patchelf --set-interpreter "$deps_path/lib/$(basename "$(ldd /usr/bin/nix | awk '/^\t\/lib/{print $1}')")" \
  --force-rpath --set-rpath "$deps_path/lib" "$nix/bin/nix"
for cmd in nix-build nix-store nix-instantiate nix-env nix-shell nix-hash nix-collect-garbage \
           nix-prefetch-url nix-copy-closure nix-daemon nix-channel; do
  ln -s nix "$nix/bin/$cmd"
done
ln -s ../../bin/nix "$nix/libexec/nix/build-remote"
nix_path=$(nix-store --store "$root" --add "$nix")

# 3. The release folder: store paths, and their database entries with the
#    reference from nix to its libraries (nix-store --add records none).
release=$work/$name
mkdir -p "$release/store"
cp -a "$root$deps_path" "$root$nix_path" "$release/store/"
{
  nix-store --store "$root" --dump-db "$deps_path"
  nix-store --store "$root" --dump-db "$nix_path" | awk -v dep="$deps_path" '
    NR == 5 { print 1; print dep; next } { print }'
} > "$release/.reginfo"
cat > "$release/install" <<NOTE
#!/bin/sh
echo "This Nix $version was packaged from Debian's nix-bin for the Nix buildpack's tests." >&2
echo "The buildpack installs it: copy store/* into /nix/store, then nix-store --load-db < .reginfo." >&2
exit 1
NOTE
chmod +x "$release/install"

tarball=$out/$name.tar.xz
tar -C "$work" --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner -cf - "$name" | xz -T0 -6 > "$tarball"
sha256=$(sha256sum "$tarball" | cut -d' ' -f1)
printf 'NIX_RELEASE_TARBALL=%s\nNIX_RELEASE_SHA256=%s\nNIX_RELEASE_VERSION=%s\n' "$tarball" "$sha256" "$version" > "$out/nix-release.env"
echo "$tarball"
echo "sha256:$sha256"
