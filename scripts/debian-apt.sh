# Sourced by make-nix-release.sh and install-tools.sh: apt for another
# Debian suite than the machine's, with a private configuration (its own
# lists, cache and sources, no dpkg status and no lock), so the machine's
# apt state is never read or changed. Only apt-get download and apt-cache
# are used with it; what is downloaded is unpacked with dpkg-deb -x.

# debian_apt TOOL ARGS...: apt-get or apt-cache for $apt_dir and $apt_arch
# (set by debian_apt_setup).
debian_apt() {
  local tool=$1; shift
  "$tool" -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" \
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/parts" \
    -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Architecture="$apt_arch" \
    -o APT::Architectures="$apt_arch" -o Acquire::Languages=none "$@"
}

# debian_apt_setup DIR SUITE ARCH: apt_dir=DIR for SUITE's main (ARCH), from
# the machine's Debian archive, with fresh lists; DIR/debs for downloads.
debian_apt_setup() {
  apt_dir=$1 apt_arch=$3
  local suite=$2 uri
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/debs"
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $2 !~ /^\[/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n $uri ]] || { echo "no Debian archive URI in /etc/apt/sources.list.d/debian.sources" >&2; return 1; }
  echo "deb [arch=$apt_arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" > "$apt_dir/sources.list"
  debian_apt apt-get update -qq || { echo "apt-get update for $suite ($uri) failed" >&2; return 1; }
}
