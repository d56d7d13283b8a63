#!/usr/bin/env bash
# teal demo: a zero-downtime rollout under load.
#
# Starts teal on the host (it supervises its own HAProxy on 127.0.0.1:8080),
# starts the compose project `teal-demo` (examples/demo/docker-compose.yml),
# puts it under load with wrk, scales `website` to two replicas, stops and
# removes the old one, and prints how many requests were served and how many
# failed. PASS means none failed. Everything it started is removed on exit.
#
# Installs what is missing (Debian, as root) and starts dockerd if no Docker
# daemon answers. Set TEAL_DEMO_KEEP=1 to keep the temp dir (teal's log,
# rendered haproxy.cfg, wrk output).
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$TEAL_ROOT"

PROJECT=teal-demo
COMPOSE_FILE="$TEAL_ROOT/examples/demo/docker-compose.yml"
HTTP_ADDR=127.0.0.1:8080
STATUS_ADDR=127.0.0.1:9180
URL="http://$HTTP_ADDR/"
LOAD_SECONDS=25
ROLL_AFTER=5

compose() { docker compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
http() { curl --noproxy '*' -s --max-time 2 "$@"; }
port_in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

TMP=""
TEAL_PID=""
WRK_PID=""
PROJECT_UP=0
RESULT=FAIL

show_teal_log() {
    if [ -n "$TMP" ] && [ -f "$TMP/teal.log" ]; then
        echo "---- last lines of teal's log ($TMP/teal.log) ----" >&2
        tail -n 40 "$TMP/teal.log" >&2 || true
        echo "----" >&2
    fi
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$RESULT" != PASS ]; then show_teal_log; fi
    say "cleaning up"
    if [ -n "$WRK_PID" ] && kill -0 "$WRK_PID" 2>/dev/null; then
        kill "$WRK_PID" 2>/dev/null; wait "$WRK_PID" 2>/dev/null
    fi
    if [ "$PROJECT_UP" = 1 ]; then
        say "removing compose project $PROJECT"
        compose down --remove-orphans -t 2 >/dev/null 2>&1 || warn "docker compose -p $PROJECT down failed"
    fi
    if [ -n "$TEAL_PID" ] && kill -0 "$TEAL_PID" 2>/dev/null; then
        say "stopping teal (SIGTERM; it stops its HAProxy)"
        # HAProxy is teal's child; remember it in case teal has to be killed.
        local children
        children="$(ps -o pid= --ppid "$TEAL_PID" 2>/dev/null | tr -s ' \n' ' ')"
        kill -TERM "$TEAL_PID" 2>/dev/null
        local i
        for i in $(seq 1 50); do kill -0 "$TEAL_PID" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$TEAL_PID" 2>/dev/null; then
            warn "teal did not exit within 10s of SIGTERM; killing it"
            kill -KILL "$TEAL_PID" 2>/dev/null
        fi
        wait "$TEAL_PID" 2>/dev/null
        for i in $children; do
            if kill -0 "$i" 2>/dev/null; then
                warn "teal's child $i ($(ps -o comm= -p "$i")) outlived teal; stopping it"
                kill -TERM "$i" 2>/dev/null
            fi
        done
    fi
    if [ -n "$TMP" ]; then
        if [ "${TEAL_DEMO_KEEP:-0}" = 1 ]; then
            say "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_cargo
ensure_packages
ensure_docker
ensure_compose_v2

say "building teal (cargo build --release)"
cargo build --release || die "cargo build --release failed"
TEAL_BIN="$TEAL_ROOT/target/release/teal"
[ -x "$TEAL_BIN" ] || die "$TEAL_BIN not found after the build"

# The app: the benchmarks' own HTTP server (integration/bench/app.rs), not
# busybox httpd, whose listen backlog of 9 drops connections under this load
# and gave the demo a p99 of about 490 ms.
say "building the app image teal-bench-app:latest (cargo bench --bench rollout -- app-image)"
cargo bench --bench rollout -- app-image || die "building the app image failed"

for addr in "$HTTP_ADDR" "$STATUS_ADDR"; do
    if port_in_use "$addr"; then
        die "$addr is already in use; stop whatever listens there and run the demo again"
    fi
done

if [ -n "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")" ]; then
    say "removing containers left over from an earlier demo (compose project $PROJECT)"
    compose down --remove-orphans -t 2 || die "could not remove the leftover compose project $PROJECT"
fi

TMP="$(mktemp -d /tmp/teal-demo.XXXXXX)"
mkdir -p "$TMP/state"

say "starting teal: HAProxy on $HTTP_ADDR, status on $STATUS_ADDR, project $PROJECT (log: $TMP/teal.log)"
"$TEAL_BIN" run \
    --label-prefix teal \
    --project "$PROJECT" \
    --reload supervise \
    --http-bind "$HTTP_ADDR" \
    --status-bind "$STATUS_ADDR" \
    --state-dir "$TMP/state" \
    --config "$TMP/haproxy.cfg" \
    >"$TMP/teal.log" 2>&1 &
TEAL_PID=$!

say "starting compose project $PROJECT (service website, image teal-bench-app:latest)"
PROJECT_UP=1
compose up -d || die "docker compose up failed"

OLD_ID="$(compose ps -q website)"
[ "$(printf '%s\n' "$OLD_ID" | grep -c .)" = 1 ] || die "expected one website container, got: $OLD_ID"
OLD_NAME="$(docker inspect -f '{{.Name}}' "$OLD_ID")"; OLD_NAME="${OLD_NAME#/}"
OLD_HOST="$(docker inspect -f '{{.Config.Hostname}}' "$OLD_ID")"

say "waiting for HAProxy at $URL to answer 200 (deadline 60s)"
deadline=$((SECONDS + 60))
until [ "$(http -o /dev/null -w '%{http_code}' "$URL" || true)" = 200 ]; do
    kill -0 "$TEAL_PID" 2>/dev/null || die "teal exited early"
    [ "$SECONDS" -lt "$deadline" ] || die "HAProxy at $URL did not answer 200 within 60s"
    sleep 0.5
done
say "HAProxy answers 200; body: $(http "$URL" | tr -d '\r\n') ($OLD_NAME's hostname is $OLD_HOST)"

say "load: wrk -t2 -c16 -d${LOAD_SECONDS}s -H 'Connection: close' --latency $URL (in the background)"
wrk -t2 -c16 -d"${LOAD_SECONDS}s" -H 'Connection: close' --latency "$URL" >"$TMP/wrk.txt" 2>&1 &
WRK_PID=$!
load_started=$SECONDS
t() { printf '[t+%ss]' "$((SECONDS - load_started))"; }
sleep "$ROLL_AFTER"

say "$(t) rollout: docker compose -p $PROJECT up -d --scale website=2 --no-recreate"
compose up -d --scale website=2 --no-recreate || die "scaling website to 2 failed"
NEW_ID="$(compose ps -q website | grep -vx "$OLD_ID" || true)"
[ "$(printf '%s\n' "$NEW_ID" | grep -c .)" = 1 ] || die "expected one new website container, got: $NEW_ID"
NEW_NAME="$(docker inspect -f '{{.Name}}' "$NEW_ID")"; NEW_NAME="${NEW_NAME#/}"
NEW_HOST="$(docker inspect -f '{{.Config.Hostname}}' "$NEW_ID")"

say "$(t) waiting until $NEW_NAME (hostname $NEW_HOST) answers through HAProxy (deadline 30s)"
t0=$SECONDS
deadline=$((SECONDS + 30))
until [ "$(http "$URL" | tr -d '\r\n' || true)" = "$NEW_HOST" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$NEW_NAME never answered through HAProxy within 30s"
    sleep 0.2
done
say "$(t) $NEW_NAME is in rotation ($((SECONDS - t0))s after docker compose returned)"

if ! kill -0 "$WRK_PID" 2>/dev/null; then
    warn "the load ended before the old container was stopped (slow machine?): the stop is not measured under load"
fi
say "$(t) docker stop $OLD_NAME (teal drains it on the kill event)"
t0=$SECONDS
docker stop "$OLD_ID" >/dev/null || die "docker stop $OLD_NAME failed"
say "$(t) docker rm $OLD_NAME (it stopped in $((SECONDS - t0))s)"
docker rm "$OLD_ID" >/dev/null || die "docker rm $OLD_NAME failed"

left=$((LOAD_SECONDS - (SECONDS - load_started)))
say "$(t) waiting for wrk to finish (~$((left > 0 ? left : 0))s left)"
wrk_rc=0
wait "$WRK_PID" || wrk_rc=$?
WRK_PID=""
[ "$wrk_rc" = 0 ] || { cat "$TMP/wrk.txt" >&2; die "wrk failed (exit $wrk_rc)"; }

# Who answers now? Only the new container should.
serving="$(for _ in 1 2 3 4 5 6; do http "$URL" | tr -d '\r\n'; echo; done | sort -u | paste -sd, -)"

echo
echo "---- wrk output ----"
cat "$TMP/wrk.txt"
echo "--------------------"

requests="$(awk '/ requests in / {print $1; exit}' "$TMP/wrk.txt")"
duration="$(awk '/ requests in / {sub(/,$/, "", $4); print $4; exit}' "$TMP/wrk.txt")"
non2xx="$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2; exit}' "$TMP/wrk.txt")"
read -r s_connect s_read s_write s_timeout < <(
    sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$TMP/wrk.txt"
    echo 0 0 0 0
)
p50="$(awk '$1 == "50%" {print $2; exit}' "$TMP/wrk.txt")"
p99="$(awk '$1 == "99%" {print $2; exit}' "$TMP/wrk.txt")"
requests="${requests:-0}"; non2xx="${non2xx:-0}"
socket_errors=$((s_connect + s_read + s_write + s_timeout))
failed=$((non2xx + socket_errors))

if [ "$requests" -gt 0 ] && [ "$failed" -eq 0 ] && [ "$serving" = "$NEW_HOST" ]; then
    RESULT=PASS
fi

echo
say "summary"
printf '    %-10s %s\n' \
    "rollout:" "$OLD_NAME -> $NEW_NAME (now serving: ${serving:-nothing})" \
    "requests:" "$requests in ${duration:-?}" \
    "failed:" "$failed, latency p50 ${p50:-?}, p99 ${p99:-?} (non-2xx/3xx: $non2xx; socket errors: connect $s_connect, read $s_read, write $s_write, timeout $s_timeout)" \
    "result:" "$RESULT"
echo
[ "$RESULT" = PASS ] || exit 1
