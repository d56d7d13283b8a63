#!/usr/bin/env bash
# Builds teal-test-app:latest, the tiny backend the integration tests run:
# a static busybox whose httpd answers every request with the container's
# hostname (or $BODY), so a response body tells which container served it.
#
# No registry is reachable, so the image is assembled with `docker import`
# from a rootfs built here. Idempotent: does nothing when the image exists,
# unless --force. Honours DOCKER_HOST (and -H via DOCKER_HOST), so it can also
# build into another daemon; --load-into HOST copies the image from the
# current daemon into the daemon at HOST instead.
#
# usage: scripts/build-test-images.sh [--force] [--load-into DOCKER_HOST]
set -euo pipefail

IMAGE=teal-test-app:latest
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
force=0
load_into=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1 ;;
    --load-into) load_into=${2:?--load-into needs a docker host}; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-test-images: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

have_image() { docker "$@" image inspect "$IMAGE" >/dev/null 2>&1; }

if [[ -n "$load_into" ]]; then
  have_image || "$0"
  if [[ $force -eq 1 ]] || ! have_image -H "$load_into"; then
    docker save "$IMAGE" | docker -H "$load_into" load >/dev/null
    echo "build-test-images: loaded $IMAGE into $load_into"
  fi
  exit 0
fi

if [[ $force -eq 0 ]] && have_image; then
  exit 0
fi

if [[ ! -x "$BUSYBOX" ]]; then
  echo "build-test-images: $BUSYBOX missing, installing busybox-static" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "build-test-images: $BUSYBOX is dynamically linked; need busybox-static" >&2
  exit 1
fi

old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/usr/bin "$root"/bin "$root"/www "$root"/tmp "$root"/etc
chmod 1777 "$root"/tmp
cp "$BUSYBOX" "$root"/usr/bin/busybox
for applet in sh ash httpd hostname touch test '[' wget sleep cat echo ls rm \
              mkdir ps kill env true false grep sed nc printf date id; do
  ln -s /usr/bin/busybox "$root/usr/bin/$applet"
done
ln -s /usr/bin/busybox "$root"/bin/sh
echo 'root:x:0:0:root:/root:/bin/sh' >"$root"/etc/passwd
echo 'root:x:0:' >"$root"/etc/group

# httpd serves /www; the body is $BODY, else the hostname (the short container
# id unless --hostname is given; host-network containers share the host's name,
# so tests set BODY). PORT lets host-network containers pick their own port.
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/bin:/bin' \
  --change 'ENV PORT=8080' \
  --change 'EXPOSE 8080' \
  --change 'WORKDIR /' \
  --change 'CMD ["/bin/sh", "-c", "echo \"${BODY:-$(hostname)}\" > /www/index.html && exec httpd -f -p ${PORT} -h /www"]' \
  - "$IMAGE" >/dev/null
# --force leaves the previous build untagged; drop it unless something uses it.
if [[ -n "$old_id" ]]; then docker image rm "$old_id" >/dev/null 2>&1 || true; fi
echo "build-test-images: built $IMAGE"
