# Shared setup of the spk benchmark (sourced by bench/run and bench/profile): release build,
# the generated repository (cached by scale), a loop-mounted journaled ext4 for every install
# root, a private nginx serving the repository on 127.0.0.1, a private dbus-daemon, and spkd.
# Everything lives in one work directory that `bench_cleanup` (an EXIT trap) tears down.
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# SPK_BENCH_BIN: directory holding spkd and spkctl to measure instead of this tree's release
# build (e.g. an experimental build elsewhere); the build step is then skipped.
BIN=${SPK_BENCH_BIN:-$REPO_ROOT/target/release}

SCALE=${SPK_BENCH_SCALE:-1.0}
CHANGED=${SPK_BENCH_CHANGED:-plasma mesa-graphics}
CACHE=${SPK_BENCH_CACHE:-/var/tmp/spk-bench-cache}
WORKBASE=${SPK_BENCH_TMP:-/var/tmp}
PARALLEL=${SPK_BENCH_PARALLEL:-}
# Index order: what the old tool installed one after the other.
PACKAGES=(kernel-modules firmware bootloader-grub kde-frameworks plasma qt6 mesa-graphics)

WORK=
MNT=
PORT=
BUS=
NGINX_PID=
DBUS_PID=
SPKD_PID=
LOOPDEV=

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

bench_need_tools() {
  [ "$(id -u)" = 0 ] || die "needs root (mount -o loop, private nginx)"
  local missing=()
  for t in cargo dbus-daemon curl tar xz mkfs.ext4 mount umount python3; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]}"
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    log "installing nginx (apt-get install -y nginx-light)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1 ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null ||
      die "could not install nginx"
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  if ! command -v pacman >/dev/null || ! command -v repo-add >/dev/null || ! command -v bsdtar >/dev/null; then
    log "installing pacman (apt-get install -y pacman-package-manager libarchive-tools)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y pacman-package-manager libarchive-tools >/dev/null ||
      die "could not install pacman"
  fi
  # Prefer the system interpreter (a pyenv shim adds ~100 ms per call).
  PY=$(command -v /usr/bin/python3 || command -v python3)
}

bench_build() {
  if [ -n "${SPK_BENCH_BIN:-}" ]; then
    log "measuring the binaries in $BIN (no build)"
    return
  fi
  log "building release binaries"
  (cd "$REPO_ROOT" && cargo build --release -q -p spkd -p spkctl) || die "cargo build failed"
}

# Generate (or reuse) the repository for $SCALE; sets REPO (holding r1/ and r2/).
bench_repo() {
  local key
  key=$(sha256sum "$BENCH_DIR/genrepo.py" | cut -c1-12)
  REPO=$CACHE/repo-s$SCALE-$key-${CHANGED// /+}
  if [ ! -f "$REPO/stats.json" ]; then
    log "generating the repository at scale $SCALE into $REPO (cached for later runs)"
    mkdir -p "$CACHE"
    rm -rf "$REPO.tmp"
    "$PY" "$BENCH_DIR/genrepo.py" "$REPO.tmp" "$SCALE" --changed "$CHANGED" || die "genrepo failed"
    rm -rf "$REPO"
    mv "$REPO.tmp" "$REPO"
  fi
  chmod -R a+rX "$REPO"
  # As on a real mirror, the second release's files are newer: nginx's ETag and Last-Modified
  # (mtime + size) must differ, or spkd's conditional refresh rightly sees "not modified".
  touch -d @1764028800 "$REPO"/r1/*
  touch -d @1765238400 "$REPO"/r2/index.json
  local n
  for n in $CHANGED; do touch -d @1765238400 "$REPO/r2/$n.tar.xz"; done
}

bench_cleanup() {
  local rc=$?
  bench_teardown
  exit "$rc"
}

# Stop what runs, unmount and delete the work directory (keeping logs with SPK_BENCH_KEEP).
bench_teardown() {
  set +e
  [ -n "$SPKD_PID" ] && kill "$SPKD_PID" 2>/dev/null && wait "$SPKD_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  [ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null && wait "$DBUS_PID" 2>/dev/null
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then
    umount "$MNT" 2>/dev/null || { sleep 1; umount "$MNT" 2>/dev/null; } || umount -l "$MNT"
  fi
  if [ -n "$LOOPDEV" ]; then
    losetup -d "$LOOPDEV" 2>/dev/null
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ -n "${SPK_BENCH_KEEP:-}" ]; then
      rm -f "$WORK/fs.img"
      log "kept logs in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  SPKD_PID= NGINX_PID= DBUS_PID= LOOPDEV= MNT= WORK=
  set -e
}

# The work directory, with a journaled ext4 image mounted at $MNT.
bench_workdir() {
  WORK=$(mktemp -d "$WORKBASE/spk-bench.XXXXXX")
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  local img_mb=${SPK_BENCH_IMG_MB:-$("$PY" -c "import math; print(1024 + math.ceil(2048 * $SCALE))")}
  truncate -s "${img_mb}M" "$WORK/fs.img"
  # Initialise inode tables and journal now, not in the background while we measure.
  mkfs.ext4 -q -F -O has_journal -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/fs.img" ||
    die "mkfs.ext4 failed"
  MNT=$WORK/mnt
  mkdir -p "$MNT"
  # Direct I/O between the loop device and its image: what the file system writes back goes to
  # the disk then, as on a real disk, instead of piling up in the image file's page cache until
  # a sync flushes it all at once (which hides any writeback overlapped with work).
  if [ "${SPK_BENCH_DIRECT_IO:-1}" = 1 ]; then
    LOOPDEV=$(losetup --direct-io=on -f --show "$WORK/fs.img") || die "losetup failed"
    mount "$LOOPDEV" "$MNT" || die "mount $LOOPDEV failed"
  else
    mount -o loop "$WORK/fs.img" "$MNT" || die "mount -o loop failed"
  fi
  FS_INFO="ext4 on loop ($([ -n "$LOOPDEV" ] && echo "direct I/O to the image" || echo "buffered image")), ${img_mb} MiB, $(findmnt -no OPTIONS "$MNT"), features: $(dumpe2fs -h "$WORK/fs.img" 2>/dev/null | sed -n 's/^Filesystem features: *//p' | tr ' ' ',')"
  case "$FS_INFO" in *has_journal*) ;; *) die "the benchmark file system has no journal" ;; esac
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A private nginx serving $WORK/www (current -> one release of $REPO) on 127.0.0.1:$PORT.
bench_nginx() {
  mkdir -p "$WORK/www" "$WORK/nginx-tmp"
  ln -sfn "$REPO/r1" "$WORK/www/current"
  ln -sfn "$REPO/p1" "$WORK/www/pcurrent"
  PORT=$(free_port)
  cat > "$WORK/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 256; }
http {
  log_format bench '\$request_method \$uri \$status \$body_bytes_sent';
  access_log $WORK/access.log bench;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 30;
  default_type application/octet-stream;
  types { application/json json; application/x-xz xz; }
  client_body_temp_path $WORK/nginx-tmp/body;
  proxy_temp_path $WORK/nginx-tmp/proxy;
  fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
  server {
    listen 127.0.0.1:$PORT;
    root $WORK/www;
  }
}
EOF
  "$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
  NGINX_PID=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/current/index.json" 2>/dev/null && break
    sleep 0.05
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/current/index.json" ||
    die "nginx does not answer (see $WORK/nginx-error.log)"
  URL=http://127.0.0.1:$PORT/current
}

# Switch what nginx serves: release 1 or 2.
serve_release() {
  ln -sfn "$REPO/r$1" "$WORK/www/current.new" && mv -T "$WORK/www/current.new" "$WORK/www/current"
  if [ -d "$REPO/p$1" ]; then
    ln -sfn "$REPO/p$1" "$WORK/www/pcurrent.new" && mv -T "$WORK/www/pcurrent.new" "$WORK/www/pcurrent"
  fi
}

# Bytes of tarballs nginx served since access-log line $1 (count lines with `access_lines`).
access_lines() { wc -l < "$WORK/access.log"; }
tarball_bytes_since() {
  tail -n +"$(($1 + 1))" "$WORK/access.log" | awk '$2 ~ /\.tar\.xz$/ { n += $4 } END { print n + 0 }'
}

# The same releases for pacman (bench/pacmanrepo.py: pN/ beside rN/, cached with them).
bench_pacman_repo() {
  if [ ! -e "$REPO/p1/bench.db" ] || [ ! -e "$REPO/p2/bench.db" ]; then
    log "building the pacman repository in $REPO/p1 and p2 (cached for later runs)"
    "$PY" "$BENCH_DIR/pacmanrepo.py" "$REPO" || die "pacmanrepo.py failed"
  fi
  chmod -R a+rX "$REPO"
  touch -h -d @1764028800 "$REPO"/p1/*
  touch -h -d @1765238400 "$REPO"/p2/bench.db* "$REPO"/p2/bench.files*
}

# pacman's configuration: the bench repository on nginx, as the issue asks (ParallelDownloads
# = 2, no signatures), no hooks of the host.
bench_pacman_conf() {
  mkdir -p "$WORK/pacman-hooks" "$WORK/gnupg"
  cat > "$WORK/pacman.conf" <<EOF
[options]
Architecture = auto
SigLevel = Never
LocalFileSigLevel = Never
ParallelDownloads = 2

[bench]
Server = http://127.0.0.1:$PORT/pcurrent
EOF
}

# A fresh root for pacman on the loop file system.
new_pacman_root() {
  local root=$MNT/$1
  rm -rf "$root"
  mkdir -p "$root/var/lib/pacman" "$root/var/cache/pacman/pkg"
  echo "$root"
}

pac() { # ROOT ARGS…
  local root=$1
  shift
  pacman --config "$WORK/pacman.conf" --root "$root" --dbpath "$root/var/lib/pacman" \
    --cachedir "$root/var/cache/pacman/pkg" --hookdir "$WORK/pacman-hooks" \
    --logfile "$WORK/pacman.log" --gpgdir "$WORK/gnupg" --noconfirm --noprogressbar "$@"
}

bench_dbus() {
  cat > "$WORK/bus.conf" <<EOF
<busconfig><type>session</type><listen>unix:path=$WORK/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>
EOF
  dbus-daemon --config-file="$WORK/bus.conf" --nofork >/dev/null 2>&1 &
  DBUS_PID=$!
  for _ in $(seq 100); do [ -S "$WORK/bus" ] && break; sleep 0.05; done
  [ -S "$WORK/bus" ] || die "dbus-daemon did not start"
  BUS=unix:path=$WORK/bus
  export SPK_BUS_ADDRESS=$BUS
}

# A fresh install root on the loop file system with spk.toml pointing at nginx.
new_root() {
  local root=$MNT/$1
  rm -rf "$root"
  mkdir -p "$root/etc/spk"
  {
    [ -n "$PARALLEL" ] && echo "parallel_downloads = $PARALLEL"
    printf '[[repo]]\nname = "bench"\nkind = "index"\nurl = "%s/"\n' "$URL"
  } > "$root/etc/spk/spk.toml"
  echo "$root"
}

spkctl() { "$BIN/spkctl" --no-progress --yes "$@"; }

# Start spkd on root $1 (optionally wrapped by the words in $SPKD_WRAP) and wait for its name.
start_spkd() {
  # shellcheck disable=SC2086
  ${SPKD_WRAP:-} "$BIN/spkd" --root "$1" --bus "$BUS" ${SPKD_ARGS:-} 2>>"$WORK/spkd.log" &
  SPKD_PID=$!
  local i
  for i in $(seq 600); do
    timeout 5 "$BIN/spkctl" list >/dev/null 2>&1 && return 0
    kill -0 "$SPKD_PID" 2>/dev/null || break
    sleep 0.05
  done
  tail -20 "$WORK/spkd.log" >&2
  die "spkd did not come up on the bus"
}

stop_spkd() {
  [ -n "$SPKD_PID" ] || return 0
  kill -TERM "$SPKD_PID" 2>/dev/null
  wait "$SPKD_PID" 2>/dev/null || true
  SPKD_PID=
}

# VmRSS / VmHWM of a process in KiB.
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# user+system CPU seconds of a process (all threads).
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
