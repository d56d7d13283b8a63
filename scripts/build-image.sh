#!/usr/bin/env bash
# Builds the images the examples run, without a registry: each is a small
# rootfs assembled here (binaries, the shared libraries `ldd` lists for them,
# /etc/passwd...) and turned into an image with `docker import`.
#
#   teal   teal:local: teal (ENTRYPOINT, CMD run) supervising /usr/sbin/haproxy.
#          Also the HAProxy container of the split layout: --entrypoint /usr/sbin/haproxy.
#   redis  teal-example-redis:local: Debian's redis-server (package redis-tools)
#          for examples/compose and examples/swarm.
#
# A build is skipped when the image already holds the same binaries (their
# hash is the image's org.teal.build label), unless --force.
# Users with a registry build the teal image from the Dockerfile instead.
#
# usage: scripts/build-image.sh [--binary PATH] [--tag TAG] [--force] [teal|redis|all]
#   --binary PATH  the teal binary to package [default: cargo build --release]
#   --tag TAG      the tag of the teal image [default: teal:local]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEAL_TAG=teal:local
REDIS_TAG=teal-example-redis:local
HAPROXY=/usr/sbin/haproxy
binary=""
force=0
what=teal

while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift ;;
    --tag) TEAL_TAG=${2:?--tag needs a tag}; shift ;;
    --force) force=1 ;;
    teal|redis|all) what=$1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build-image: $*" >&2; }

# install_if_missing FILE PACKAGE: apt-get install PACKAGE when FILE is missing.
install_if_missing() {
  [[ -e "$1" ]] && return 0
  say "$1 missing, installing $2"
  [[ "$(id -u)" -eq 0 ]] || { say "run as root or: apt-get install -y $2"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2 </dev/null ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2 </dev/null; }
}

# new_rootfs: an empty rootfs laid out like this (merged-/usr) Debian.
new_rootfs() {
  local root d
  root=$(mktemp -d)
  for d in bin sbin lib lib64; do
    if [[ -L "/$d" ]]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
  done
  mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/lib64 "$root"/etc "$root"/tmp \
           "$root"/run "$root"/var/lib "$root"/dev "$root"/proc "$root"/sys
  chmod 1777 "$root"/tmp
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    >"$root"/etc/passwd
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root"/etc/group
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root"/etc/nsswitch.conf
  echo "$root"
}

# add_binary ROOT SRC DEST: copies SRC (stripped) to ROOT/DEST with every
# library the dynamic loader would load for it.
add_binary() {
  local root=$1 src=$2 dest=$3 lib dir
  strip -o "$root$dest" "$src" 2>/dev/null || cp "$src" "$root$dest"
  chmod 755 "$root$dest"
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  while read -r lib; do
    [[ -f "$lib" ]] || continue
    dir=$(readlink -f "$(dirname "$lib")")
    mkdir -p "$root$dir"
    cp -L "$lib" "$root$dir/$(basename "$lib")"
  done < <(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

# import ROOT TAG HASH CHANGES...: the rootfs as image TAG, labelled with HASH.
import() {
  local root=$1 tag=$2 hash=$3 old_id
  shift 3
  local changes=(--change "LABEL org.teal.build=$hash")
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  tar -C "$root" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  # The previous build is left untagged; drop it unless something uses it.
  if [[ -n "$old_id" ]] && [[ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  say "built $tag"
}

# up_to_date TAG HASH
up_to_date() {
  [[ $force -eq 0 ]] &&
    [[ "$(docker image inspect --format '{{index .Config.Labels "org.teal.build"}}' "$1" 2>/dev/null)" == "$2" ]]
}

build_teal() {
  install_if_missing "$HAPROXY" haproxy
  if [[ -z "$binary" ]]; then
    say "cargo build --release"
    (cd "$ROOT" && cargo build --release --bin teal >&2)
    binary="$ROOT/target/release/teal"
  fi
  [[ -x "$binary" ]] || { say "$binary is not an executable"; exit 1; }
  local hash root
  hash=$(cat "$binary" "$HAPROXY" | sha256sum | cut -c1-16)
  if up_to_date "$TEAL_TAG" "$hash"; then
    say "$TEAL_TAG is up to date"
    return 0
  fi
  root=$(new_rootfs)
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  add_binary "$root" "$binary" /usr/bin/teal
  add_binary "$root" "$HAPROXY" /usr/sbin/haproxy
  mkdir -p "$root"/var/lib/teal
  # The status endpoint listens on every address of the container's own
  # network namespace; it is reachable from outside only if published.
  import "$root" "$TEAL_TAG" "$hash" \
    'ENV PATH=/usr/sbin:/usr/bin' \
    'ENV TEAL_HAPROXY=/usr/sbin/haproxy' \
    'ENV TEAL_STATUS_BIND=0.0.0.0:9180' \
    'EXPOSE 80' \
    'EXPOSE 9180' \
    'WORKDIR /var/lib/teal' \
    'ENTRYPOINT ["/usr/bin/teal"]' \
    'CMD ["run"]'
}

build_redis() {
  # Debian's redis-server is redis-check-rdb under another name (the program
  # picks its role from argv[0]); redis-tools ships it without starting a service.
  local redis=/usr/bin/redis-check-rdb hash root
  install_if_missing "$redis" redis-tools
  hash=$(sha256sum <"$redis" | cut -c1-16)
  if up_to_date "$REDIS_TAG" "$hash"; then
    say "$REDIS_TAG is up to date"
    return 0
  fi
  root=$(new_rootfs)
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  add_binary "$root" "$redis" /usr/bin/redis-server
  mkdir -p "$root"/data
  import "$root" "$REDIS_TAG" "$hash" \
    'ENV PATH=/usr/bin' \
    'EXPOSE 6379' \
    'WORKDIR /data' \
    'ENTRYPOINT ["/usr/bin/redis-server"]' \
    'CMD ["--protected-mode", "no", "--save", "", "--appendonly", "no"]'
}

case "$what" in
  teal) build_teal ;;
  redis) build_redis ;;
  all) build_teal; build_redis ;;
esac
