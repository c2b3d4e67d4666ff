#!/usr/bin/env bash
# Makes a Nix release tarball in the official layout from Debian's nix-bin,
# for machines that cannot reach releases.nixos.org (the tests and the demo).
# Two releases can be made:
#
#   --nix 2.8   (the default) this machine's installed Debian 12 nix-bin 2.8,
#               the oldest Nix the buildpack supports;
#   --nix 2.34  Debian sid's nix-bin 2.34, from the .debs pinned by sha256 in
#               scripts/nix-release/sid-<arch>.txt, glibc and its loader
#               included (sid's Nix needs a newer glibc than Debian 12's).
#               Nothing is installed: the .debs are fetched with a private apt
#               configuration (see sid_apt) and unpacked with dpkg-deb -x.
#
#   nix-<version>-<system>/
#     store/<hash>-nix-<version>-deps/lib/...   ld.so, libc and every library nix links
#     store/<hash>-nix-<version>/bin/nix        patched to load them from the store
#     store/<hash>-busybox-static-<version>/    (2.34) the sandbox shell, see below
#     .reginfo                                  the store database entries (nix-store --load-db)
#     install                                   a note: the buildpack installs it, not this script
#
# The sandbox shell: Debian compiled Nix 2.34 with sandbox-paths defaulting
# to /bin/sh=/usr/bin/bash-static, a path outside the store, which a build in
# a chroot (the buildpack's native store runtime) cannot find. The official
# release's default names a static busybox inside its own closure instead.
# This release carries a static busybox as a store path of its own and names
# it by the relative symlink <nix>/libexec/nix/sandbox-shell, so a buildpack
# can set sandbox-paths = /bin/sh=<that busybox> (busybox runs as sh when
# called as /bin/sh). The nix store path refers to it, so it travels with
# Nix's closure.
#
# Usage:
#   scripts/make-nix-release.sh [--nix 2.8|2.34] [--arch amd64|arm64] OUT_DIR
#   scripts/make-nix-release.sh --nix 2.34 [--arch ARCH] --update-pins
#       resolves sid's current nix-bin and its library closure again and
#       rewrites scripts/nix-release/sid-<arch>.txt (then review the diff).
# Prints the tarball's path and sha256, and writes them to OUT_DIR/nix-release.env.
# The sid .debs are kept in OUT_DIR/.apt-sid-<arch> (or $NIXCNB_SID_APT_DIR).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=debian-apt.sh
. "$here/debian-apt.sh"
nix_version=2.8 arch=$(dpkg --print-architecture) update_pins=false out=
while (($#)); do
  case $1 in
    --nix) nix_version=${2:?--nix needs 2.8 or 2.34}; shift 2 ;;
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --update-pins) update_pins=true; shift ;;
    -*) echo "make-nix-release: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
case $arch in
  amd64) triplet=x86_64-linux-gnu loader=ld-linux-x86-64.so.2 system=x86_64-linux ;;
  arm64) triplet=aarch64-linux-gnu loader=ld-linux-aarch64.so.1 system=aarch64-linux ;;
  *) echo "make-nix-release: architecture $arch is not supported (amd64, arm64)" >&2; exit 2 ;;
esac
case $nix_version in
  2.8)
    [[ $arch == "$(dpkg --print-architecture)" ]] ||
      { echo "make-nix-release: --nix 2.8 packages this machine's nix-bin, which is $(dpkg --print-architecture), not $arch" >&2; exit 2; }
    ! $update_pins || { echo "make-nix-release: --update-pins is for --nix 2.34 (2.8 is the installed nix-bin)" >&2; exit 2; } ;;
  2.34) pins=$here/nix-release/sid-$arch.txt ;;
  *) echo "make-nix-release: --nix must be 2.8 or 2.34, not $nix_version" >&2; exit 2 ;;
esac
$update_pins || [[ -n $out ]] || { echo "usage: make-nix-release.sh [--nix 2.8|2.34] [--arch ARCH] OUT_DIR" >&2; exit 2; }
for tool in nix-store patchelf xz dpkg-deb apt-get sha256sum; do
  command -v "$tool" >/dev/null || { echo "make-nix-release: $tool is missing (run scripts/install-tools.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
root=$work/root   # a chroot store: paths are /nix/store/..., files live under $root
export NIX_CONFIG="build-users-group ="

# sid_apt ARGS...: apt-get or apt-cache (first arg) with a private
# configuration for Debian sid (debian-apt.sh).
sid_apt() { debian_apt "$@"; }

sid_apt_setup() {
  debian_apt_setup "${NIXCNB_SID_APT_DIR:-${out:-$work}/.apt-sid-$arch}" sid "$arch" ||
    { echo "make-nix-release: Debian sid's package lists could not be had" >&2; exit 1; }
}

# deb_file PKG VERSION: where apt-get download puts PKG's .deb in $apt_dir/debs.
deb_file() {
  local f
  for f in "$apt_dir/debs/${1}_${2//:/%3a}_"*.deb; do [[ -e $f ]] && { echo "$f"; return 0; }; done
  return 1
}

# sid_fetch PKG=VERSION...: downloads, in one go, the .debs not yet in
# $apt_dir/debs. Fails naming the packages the archive no longer has.
sid_fetch() {
  local want=() spec missing=()
  for spec in "$@"; do deb_file "${spec%%=*}" "${spec#*=}" >/dev/null || want+=("$spec"); done
  if ((${#want[@]})); then
    (cd "$apt_dir/debs" && sid_apt apt-get download -qq "${want[@]}" 2>&1 | grep -v 'unsandboxed as root' >&2) || true
  fi
  for spec in "$@"; do deb_file "${spec%%=*}" "${spec#*=}" >/dev/null || missing+=("$spec"); done
  if ((${#missing[@]})); then
    echo "make-nix-release: Debian sid no longer has ${missing[*]}" >&2
    return 1
  fi
}

# find_lib SYSROOT SONAME: the file a loader would find for SONAME among the
# unpacked packages (never the host's).
find_lib() {
  local d
  for d in lib/$triplet usr/lib/$triplet lib usr/lib lib64 usr/lib64; do
    [[ -e $1/$d/$2 ]] && { echo "$1/$d/$2"; return 0; }
  done
  return 1
}

# lib_closure SYSROOT ELF...: every library the ELF files load, transitively,
# plus the NSS modules glibc opens without an ELF dependency. Fails naming a
# library no unpacked package provides.
lib_closure() {
  local sysroot=$1; shift
  local -A seen=()
  local queue=(libnss_dns.so.2 libnss_files.so.2) missing=() f so lib
  for f in "$@"; do queue+=($(patchelf --print-needed "$f")); done
  while ((${#queue[@]})); do
    so=${queue[0]}; queue=("${queue[@]:1}")
    [[ -n ${seen[$so]:-} ]] && continue
    seen[$so]=1
    if ! lib=$(find_lib "$sysroot" "$so"); then missing+=("$so"); continue; fi
    echo "$lib"
    queue+=($(patchelf --print-needed "$lib" 2>/dev/null || true))
  done
  if ((${#missing[@]})); then
    echo "make-nix-release: no pinned package provides ${missing[*]}" >&2
    return 1
  fi
}

# update_pins: resolve sid's nix-bin, busybox-static and the library
# packages they depend on, unpack them, and pin the ones that provide a
# library of Nix's closure (or the shell).
update_pins() {
  sid_apt_setup
  local unpacked=$work/unpacked candidates=() pkg version file
  mkdir -p "$unpacked"
  mapfile -t candidates < <(sid_apt apt-cache depends --recurse --no-recommends --no-suggests \
      --no-conflicts --no-breaks --no-replaces --no-enhances nix-bin busybox-static |
    grep -v '^[ <]' | sort -u)
  local specs=()
  for pkg in "${candidates[@]}"; do
    specs+=("$pkg=$(sid_apt apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ { print $2; exit }')")
  done
  sid_fetch "${specs[@]}"
  for spec in "${specs[@]}"; do
    pkg=${spec%%=*} version=${spec#*=} file=$(deb_file "$pkg" "$version")
    mkdir -p "$unpacked/$pkg" && dpkg-deb -x "$file" "$unpacked/$pkg"
    # One merged tree resolves the libraries; each package's own tree says who provided what.
    dpkg-deb -x "$file" "$work/sysroot"
    printf '%s %s %s\n' "$pkg" "$version" "$file" >> "$work/candidates"
  done
  local needed
  needed=$(lib_closure "$work/sysroot" "$work/sysroot/usr/bin/nix" "$work/sysroot/usr/libexec/nix-nswrapper")
  mkdir -p "$(dirname "$pins")"
  {
    echo "# Debian sid's nix-bin and the packages of its library closure ($arch), pinned by sha256."
    echo "# Written by scripts/make-nix-release.sh --nix 2.34 --arch $arch --update-pins on $(date -u +%F)."
    echo "# package version arch sha256"
    while read -r pkg version file; do
      local keep=false lib
      [[ $pkg == nix-bin || $pkg == busybox-static ]] && keep=true
      for lib in $needed; do
        local rel=${lib#"$work/sysroot/"}
        if [[ -e $unpacked/$pkg/$rel ]]; then keep=true; break; fi
      done
      if $keep; then
        printf '%s %s %s %s\n' "$pkg" "$version" "$(dpkg-deb -f "$file" Architecture)" "$(sha256sum "$file" | cut -d' ' -f1)"
      fi
    done < "$work/candidates"
  } > "$pins.new"
  mv "$pins.new" "$pins"
  echo "$pins: $(grep -vc '^#' "$pins") packages"
}

if $update_pins; then update_pins; exit 0; fi
mkdir -p "$out"; out=$(cd "$out" && pwd)

# Gather Nix and its libraries: $nix_bin, $libs (one per line), $shell.
shell=
if [[ $nix_version == 2.8 ]]; then
  version=$(dpkg-query -W -f='${Version}' nix-bin | sed 's/-.*//')  # nix-store --version would create /nix
  nix_bin=/usr/bin/nix
  libs=$(ldd /usr/bin/nix | awk '/=> \//{print $3} /^\t\/lib/{print $1}')
else
  [[ -f $pins ]] || { echo "make-nix-release: $pins is missing (make it with --update-pins)" >&2; exit 1; }
  sid_apt_setup
  sysroot=$work/sysroot
  sid_fetch $(awk '$1 !~ /^#/ && NF { print $1 "=" $2 }' "$pins") ||
    { echo "make-nix-release: $pins pins packages Debian sid no longer has: refresh the pins with --update-pins" >&2; exit 1; }
  while read -r pkg pversion parch sha; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    file=$(deb_file "$pkg" "$pversion")
    got=$(sha256sum "$file" | cut -d' ' -f1)
    [[ $got == "$sha" && $(dpkg-deb -f "$file" Architecture) == "$parch" ]] ||
      { echo "make-nix-release: $(basename "$file") has sha256 $got, but $pins pins $sha ($parch): the archive changed" >&2; exit 1; }
    dpkg-deb -x "$file" "$sysroot"
    if [[ $pkg == nix-bin ]]; then version=${pversion%%+*} version=${version%%-*}; fi
  done < "$pins"
  [[ -n ${version:-} ]] || { echo "make-nix-release: $pins pins no nix-bin" >&2; exit 1; }
  nix_bin=$sysroot/usr/bin/nix
  libs=$(lib_closure "$sysroot" "$nix_bin" "$sysroot/usr/libexec/nix-nswrapper")
  shell=$sysroot/usr/bin/busybox
  [[ -x $shell ]] || { echo "make-nix-release: $pins pins no busybox-static (the sandbox shell)" >&2; exit 1; }
  shell_version=$(awk '$1 == "busybox-static" { v = $2; sub(/^[0-9]+:/, "", v); sub(/-[^-]*$/, "", v); print v }' "$pins")
fi
name=nix-$version-$system

# 1. The libraries, with the loader, in a store path of their own.
deps=$work/nix-$version-deps
mkdir -p "$deps/lib"
for lib in $libs; do cp -L "$lib" "$deps/lib/$(basename "$lib")"; done
[[ -e $deps/lib/$loader ]] || { echo "make-nix-release: the library closure lacks the loader $loader" >&2; exit 1; }
for lib in "$deps"/lib/libnix*.so; do [[ -e $lib ]] && patchelf --set-rpath '$ORIGIN' "$lib"; done
deps_path=$(nix-store --store "$root" --add "$deps")
paths=("$deps_path")

# 2. The sandbox shell (2.34), a store path of its own.
if [[ -n $shell ]]; then
  sh_dir=$work/busybox-static-$shell_version
  mkdir -p "$sh_dir/bin"
  cp "$shell" "$sh_dir/bin/busybox"
  shell_path=$(nix-store --store "$root" --add "$sh_dir")
  paths+=("$shell_path")
fi

# 3. Nix itself, loading its libraries from that path: no wrapper, no /bin/sh.
#    One multi-call binary; the other names are symlinks to it, as Nix finds
#    itself through /proc/self/exe (nix __build-remote).
nix=$work/nix-$version
mkdir -p "$nix/bin" "$nix/libexec/nix"
patch_elf() {
  cp "$1" "$2"
  patchelf --set-interpreter "$deps_path/lib/$loader" --force-rpath --set-rpath "$deps_path/lib" "$2"
}
patch_elf "$nix_bin" "$nix/bin/nix"
for cmd in nix-build nix-store nix-instantiate nix-env nix-shell nix-hash nix-collect-garbage \
           nix-prefetch-url nix-copy-closure nix-daemon nix-channel; do
  ln -s nix "$nix/bin/$cmd"
done
ln -s ../../bin/nix "$nix/libexec/nix/build-remote"
if [[ $nix_version == 2.34 ]]; then
  patch_elf "$sysroot/usr/libexec/nix-nswrapper" "$nix/libexec/nix-nswrapper"
  # Relative, as every link of the release: unpackers check that a link
  # resolves inside the tarball, and an absolute /nix/store target does not.
  ln -s "../../../$(basename "$shell_path")/bin/busybox" "$nix/libexec/nix/sandbox-shell"
fi
nix_path=$(nix-store --store "$root" --add "$nix")
paths+=("$nix_path")

# 4. The release folder: store paths, and their database entries with their
#    references (nix-store --add records none): a path refers to another
#    when its serialisation (NAR: file contents and symlink targets) holds
#    the other's hash, as Nix's own scan decides.
release=$work/$name
mkdir -p "$release/store"
for p in "${paths[@]}"; do cp -a "$root$p" "$release/store/"; done
for p in "${paths[@]}"; do
  refs=()
  nix-store --store "$root" --dump "$root$p" > "$work/nar"
  for q in "${paths[@]}"; do
    hash=${q#/nix/store/}; hash=${hash%%-*}
    if grep -qa -- "$hash" "$work/nar"; then refs+=("$q"); fi
  done
  nix-store --store "$root" --dump-db "$p" | awk -v refs="${refs[*]}" '
    NR == 5 { n = split(refs, r, " "); print n; for (i = 1; i <= n; i++) print r[i]; next } { print }'
done > "$release/.reginfo"
rm -f "$work/nar"
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
