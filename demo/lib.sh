# Shared by demo/run, demo/record-upgrade.sh and demo/screenshots.sh (sourced, after
# `set -euo pipefail`, from the repository root): a temporary work directory cleaned up on exit,
# a sample repository served on 127.0.0.1, a private D-Bus and spkd managing a temporary root.
# Needs: cargo, dbus-daemon, tar, xz, sha256sum, python3.

# demo_init PROFILE: build the binaries (PROFILE `release` or `debug`; sets bin), make the work
# directory (sets work) and arrange for every process in pids to be killed on exit. With
# DEMO_KEEP=1 the work directory (logs, repository, root) is kept and named.
demo_init() {
  if [[ $1 == release ]]; then
    cargo build --release --workspace --bins
    bin=$PWD/target/release
  else
    cargo build --workspace --bins
    bin=$PWD/target/debug
  fi
  work=$(mktemp -d /tmp/spk-demo.XXXXXX)
  pids=()
  trap demo_cleanup EXIT
}

demo_cleanup() {
  local status=$?
  local pid running _
  if ((${#pids[@]})); then
    kill "${pids[@]}" 2>/dev/null || true
    # Up to 3 s to exit, then SIGKILL: lxqt-panel ignores SIGTERM once its X server is gone.
    # (Our unreaped children keep their pids, so none can be another process's by now.)
    for _ in $(seq 30); do
      running=0
      for pid in "${pids[@]}"; do demo_alive "$pid" && running=1; done
      ((running)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  if [[ ${DEMO_KEEP:-} == 1 || $status != 0 ]]; then
    echo "== logs and files kept in $work" >&2
  else
    rm -rf "$work"
  fi
}

# demo_alive PID: whether PID is running (not exited, nor a zombie waiting to be reaped).
demo_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# make_release DIR VERSION: a few packages with text, binary data and symlinks, plus index.json.
# The packages differ in size (plasma 4 MiB, qt6 3 MiB, mesa-graphics 2 MiB of incompressible
# data), so their progress bars do not move in step.
make_release() {
  local dir=$1 version=$2 entries=() name mib
  mkdir -p "$dir"
  for name in plasma qt6 mesa-graphics; do
    case $name in plasma) mib=4 ;; qt6) mib=3 ;; *) mib=2 ;; esac
    local src=$work/src/$name-$version
    mkdir -p "$src/usr/bin" "$src/usr/share/$name" "$src/usr/lib"
    printf '#!/bin/sh\necho "%s %s"\n' "$name" "$version" > "$src/usr/bin/$name"
    chmod 755 "$src/usr/bin/$name"
    head -c $((mib * 1024 * 1024)) /dev/urandom > "$src/usr/lib/lib$name.so.$version"
    ln -s "lib$name.so.$version" "$src/usr/lib/lib$name.so"
    for i in $(seq 1 50); do echo "$name $version data file $i" > "$src/usr/share/$name/data-$i.txt"; done
    tar -C "$src" -cJf "$dir/$name.tar.xz" usr
    local sha size isize
    sha=$(sha256sum "$dir/$name.tar.xz" | cut -d' ' -f1)
    size=$(stat -c %s "$dir/$name.tar.xz")
    isize=$(du -sb "$src" | cut -f1)
    entries+=("{\"name\":\"$name\",\"version\":\"$version\",\"kind\":\"userland\",\"file\":\"$name.tar.xz\",\"sha256\":\"$sha\",\"size\":$size,\"installed_size\":$isize,\"description\":\"demo $name $version\"}")
  done
  (IFS=,; echo "{\"format\":1,\"release\":\"$version\",\"packages\":[${entries[*]}]}") > "$dir/index.json"
}

# serve_repo DIR [RATE]: serve DIR on 127.0.0.1 (sets port), each tarball download sent at RATE
# bytes per second (default: as fast as it goes); requests are logged to $work/http.log.
serve_repo() {
  local dir=$1 rate=${2:-0}
  rm -f "$work/port"
  python3 demo/serve.py "$dir" "$work/port" "$rate" 2>"$work/http.log" &
  pids+=($!)
  for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
  port=$(cat "$work/port")
}

# start_spkd: a private D-Bus (socket $work/bus) and spkd on the root $work/root using the repository
# on $port; exports SPK_BUS_ADDRESS and returns once spkd answers.
start_spkd() {
  cat > "$work/bus.conf" <<CONF
<busconfig><type>session</type><listen>unix:path=$work/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>
CONF
  dbus-daemon --config-file="$work/bus.conf" --nofork >/dev/null 2>&1 &
  pids+=($!)
  mkdir -p "$work/root/etc/spk"
  printf '[[repo]]\nname = "demo"\nkind = "index"\nurl = "http://127.0.0.1:%s/"\n' "$port" > "$work/root/etc/spk/spk.toml"
  for _ in $(seq 50); do [ -S "$work/bus" ] && break; sleep 0.1; done
  "$bin/spkd" --root "$work/root" --bus "unix:path=$work/bus" 2>"$work/spkd.log" &
  pids+=($!)
  export SPK_BUS_ADDRESS="unix:path=$work/bus"
  for _ in $(seq 100); do timeout 2 "$bin/spkctl" list >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "spkd did not answer; its log:" >&2
  cat "$work/spkd.log" >&2
  return 1
}

# A root with plasma, qt6 and mesa-graphics 1.0-1 installed through spkd, and release 2.0-1
# published, served at 1 MiB/s per tarball: an upgrade waiting to be recorded.
upgrade_waiting() {
  make_release "$work/repo" 1.0-1
  serve_repo "$work/repo" $((1024 * 1024))
  start_spkd
  "$bin/spkctl" install --yes plasma qt6 mesa-graphics >/dev/null
  # A new release; `spkctl upgrade` refreshes before it shows the plan.
  make_release "$work/repo" 2.0-1
}
