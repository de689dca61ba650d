#!/usr/bin/env bash
# Records the container events an engine sends for one lifecycle (create, start, health checks,
# rename, stop, start, kill, remove) through the subscription the runtime makes, into
# <name>.jsonl beside this script, and a replay of them from the first event's time.
#   bash record.sh docker-20.10 unix:///var/run/docker.sock
#   bash record.sh podman-4.3 unix:///run/dso-podman/podman.sock
# Podman's service runs no health checks by itself here (they need systemd timers): the script
# runs them with `podman healthcheck run`; on Docker the engine runs them every second.
set -euo pipefail
name="$1"
host="$2"
socket="${host#unix://}"
here="$(cd "$(dirname "$0")" && pwd)"
label="dso.test=record-$$"
export DOCKER_HOST="$host"
case "$name" in
  podman*) events='["create","start","died","remove","rename","health_status"]' ;;
  *) events='["create","start","die","destroy","rename","health_status"]' ;;
esac
filters="$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' \
  "{\"type\":[\"container\"],\"label\":[\"$label\"],\"event\":$events}")"
out="$here/$name.jsonl"
curl -sN --unix-socket "$socket" "http://engine/v1.41/events?filters=$filters" >"$out" &
reader=$!
trap 'kill $reader 2>/dev/null || true; docker rm -f dso-record-$$ dso-record-$$-renamed >/dev/null 2>&1 || true' EXIT
sleep 1
check() {
  if [[ "$name" == podman* ]]; then
    podman --url "$host" healthcheck run "dso-record-$$" >/dev/null 2>&1 || true
  else
    sleep 2.5
  fi
}
docker create --name "dso-record-$$" --label "$label" --label app=web --network none \
  --health-cmd 'test -f /tmp/ok' --health-interval 1s --health-retries 1 \
  dso-test/busybox:1 sleep 3600 >/dev/null
docker start "dso-record-$$" >/dev/null
check
docker exec "dso-record-$$" touch /tmp/ok
check
check
docker rename "dso-record-$$" "dso-record-$$-renamed"
docker stop -t 1 "dso-record-$$-renamed" >/dev/null
docker start "dso-record-$$-renamed" >/dev/null
docker kill "dso-record-$$-renamed" >/dev/null
docker rm -f "dso-record-$$-renamed" >/dev/null
sleep 1
kill "$reader"
wait "$reader" 2>/dev/null || true
# The replay a resume asks for, from the first event's exact time as `seconds.nanoseconds`.
first="$(head -1 "$out" | grep -o '"timeNano":[0-9]*' | cut -d: -f2)"
since="${first:0:${#first}-9}.${first: -9}"
timeout 3 curl -sN --unix-socket "$socket" \
  "http://engine/v1.41/events?since=$since&filters=$filters" >"$here/$name.replay-decimal.jsonl" || true
if [[ "$name" == podman* ]]; then
  # And as the runtime asks Podman: RFC 3339, one nanosecond before (engine-dialect.ts).
  rfc="$(python3 -c 'import sys,datetime as d;n=int(sys.argv[1])-1;print(d.datetime.fromtimestamp(n//10**9,d.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")+".%09dZ"%(n%10**9))' "$first")"
  timeout 3 curl -sN --unix-socket "$socket" \
    "http://engine/v1.41/events?since=$rfc&filters=$filters" >"$here/$name.replay-rfc3339.jsonl" || true
fi
echo "recorded $(wc -l <"$out") events into $out; replay from $since: $(wc -l <"$here/$name.replay-decimal.jsonl")"
