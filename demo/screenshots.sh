#!/usr/bin/env bash
# Screenshots of spk-notifier for README.md, taken on a real (headless) desktop: Xvfb, a
# private session D-Bus, LXQt's panel (its "statusnotifier" plugin hosts StatusNotifierItems as
# Plasma's tray does), the notification server dunst, and spk-notifier, the real binary, with
# spkd and the demo repository (demo/lib.sh) holding updates. Writes to docs/screenshots/ (or
# DIR given as the argument):
#   tray.png          the tray icon with updates available, its tooltip showing
#   menu.png          the icon's menu, opened by a right click
#   notification.png  the "updates available" notification as dunst draws it
#   progress.png      the progress notification while the updates chosen from the menu install
# Each picture is cropped from the screen to the part that changed when it appeared, and
# reduced to 256 colours, without timestamps (a rerun gives the same files but for the progress
# shown). Fully automatic: exits non-zero (logs kept) if a step never happens.
# Needs what demo/run needs, and the Debian packages xvfb dunst lxqt-panel breeze-icon-theme
# xdotool imagemagick x11-xserver-utils (and optipng, used when present). They are for making
# these pictures only; no test needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in Xvfb dunst dunstctl lxqt-panel xdotool xsetroot import composite identify mogrify; do
  command -v "$tool" >/dev/null || { echo "screenshots.sh needs $tool (see the comment at the top)" >&2; exit 1; }
done
[[ -d /usr/share/icons/breeze ]] || { echo "screenshots.sh needs breeze-icon-theme" >&2; exit 1; }
source demo/lib.sh
out=$(realpath -m "${1:-docs/screenshots}")
demo_init debug
mkdir -p "$out" "$work/home/.config/lxqt" "$work/shots"

# wait_for WHAT COMMAND...: run COMMAND every 0.2 s until it succeeds, for 30 s at most.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "screenshots.sh: timed out waiting for $what; logs in $work" >&2
  return 1
}

# shoot NAME: the whole screen, as $work/shots/NAME.png.
shoot() { import -display "$DISPLAY" -window root "$work/shots/$1.png"; }

# changed BEFORE AFTER [REGION]: the box (WxH+X+Y, on the screen) of what differs between two
# shots, looking only within REGION (WxH+X+Y; default: the whole screen).
changed() {
  local region=${3:-${width}x${height}+0+0} w h x y rx ry
  composite -compose difference "$work/shots/$1.png" "$work/shots/$2.png" "$work/shots/diff.png"
  mogrify -crop "$region" +repage "$work/shots/diff.png"
  # (identify warns when nothing differs: an expected answer while waiting for a change.)
  IFS='x+' read -r w h x y <<<"$(identify -fuzz 4% -format '%@' "$work/shots/diff.png" 2>/dev/null)"
  IFS='x+' read -r _ _ rx ry <<<"$region"
  echo "${w}x${h}+$((x + rx))+$((y + ry))"
}

# await_change BEFORE NAME MIN_WIDTH MIN_HEIGHT [REGION]: shoot NAME every 0.5 s until what
# changed since BEFORE (within REGION) is at least MIN_WIDTH x MIN_HEIGHT, for 15 s at most;
# prints the box of the change.
await_change() {
  local before=$1 name=$2 min_w=$3 min_h=$4 region=${5:-} box w h
  for _ in $(seq 30); do
    shoot "$name"
    box=$(changed "$before" "$name" $region)
    IFS='x+' read -r w h _ <<<"$box"
    if ((w >= min_w && h >= min_h)); then echo "$box"; return 0; fi
    sleep 0.5
  done
  echo "screenshots.sh: $name never showed (what changed: $box); logs in $work" >&2
  return 1
}

# keep SHOT NAME BOX MARGIN [CORNER [WIDTH]]: crop SHOT to BOX grown by MARGIN pixels on every
# side (to the screen's bottom-right corner when CORNER is given, so the panel and the tray
# show; leftwards to WIDTH pixels at least), into $out/NAME.png.
keep() {
  local shot=$1 name=$2 box=$3 margin=$4 corner=${5:-} min_width=${6:-0}
  local w h x y
  IFS='x+' read -r w h x y <<<"$box"
  ((w > 1 && h > 1)) || { echo "screenshots.sh: nothing changed for $name ($box)" >&2; return 1; }
  local x0=$((x > margin ? x - margin : 0)) y0=$((y > margin ? y - margin : 0))
  local x1=$((x + w + margin < width ? x + w + margin : width))
  local y1=$((y + h + margin < height ? y + h + margin : height))
  [[ -n $corner ]] && x1=$width y1=$height
  ((x1 - x0 >= min_width)) || x0=$((x1 > min_width ? x1 - min_width : 0))
  cp "$work/shots/$shot.png" "$out/$name.png"
  mogrify -crop "$((x1 - x0))x$((y1 - y0))+$x0+$y0" +repage +dither -colors 256 -strip \
    -define png:exclude-chunks=date,time "$out/$name.png"
  if command -v optipng >/dev/null; then optipng -quiet -o5 "$out/$name.png"; fi
  echo "== $out/$name.png: $((x1 - x0))x$((y1 - y0)), $(stat -c %s "$out/$name.png") bytes"
}

echo "== a sample repository, spkd on $work/root with release 1.0-1 installed"
make_release "$work/repo" 1.0-1
# The tarballs go at 512 KiB/s, so the install chosen from the menu lasts long enough to be
# seen in progress.
serve_repo "$work/repo" $((512 * 1024))
start_spkd
"$bin/spkctl" install --yes plasma qt6 mesa-graphics >/dev/null

echo "== the desktop: Xvfb, a session bus, dunst, lxqt-panel"
width=1024 height=640
Xvfb -displayfd 3 -noreset -nolisten tcp -screen 0 "${width}x${height}x24" 3>"$work/display" 2>"$work/xvfb.log" &
pids+=($!)
wait_for "Xvfb" test -s "$work/display"
export DISPLAY=:$(cat "$work/display")
cat > "$work/session.conf" <<CONF
<busconfig><type>session</type><listen>unix:path=$work/session-bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>
CONF
dbus-daemon --config-file="$work/session.conf" --nofork >/dev/null 2>&1 &
pids+=($!)
wait_for "the session bus" test -S "$work/session-bus"
export DBUS_SESSION_BUS_ADDRESS=unix:path=$work/session-bus
# Every notification of "Software Updates" is logged (with its progress value) by a rule script.
cat > "$work/record.sh" <<EOF
#!/bin/sh
printf '%s|%s|%s\n' "\$DUNST_SUMMARY" "\$DUNST_PROGRESS" "\$DUNST_BODY" | tr '\n' ' ' >> "$work/notifications.log"
echo >> "$work/notifications.log"
EOF
chmod +x "$work/record.sh"
cat > "$work/dunstrc" <<EOF
[global]
font = DejaVu Sans 10
width = 380
origin = top-right
offset = 16x16
padding = 10
horizontal_padding = 12
frame_width = 1
frame_color = "#3daee9"
separator_color = frame
corner_radius = 4
icon_position = left
min_icon_size = 48
max_icon_size = 48
enable_recursive_icon_lookup = true
icon_theme = "breeze, Adwaita"
progress_bar = true
progress_bar_height = 8
progress_bar_min_width = 200
progress_bar_max_width = 300
format = "<b>%s</b>\n%b"
show_indicators = no

[urgency_normal]
background = "#eff0f1"
foreground = "#232627"
highlight = "#3daee9"
timeout = 0

[urgency_low]
background = "#eff0f1"
foreground = "#232627"
highlight = "#3daee9"
timeout = 0

[software-updates]
appname = "Software Updates"
script = $work/record.sh
EOF
dunst -config "$work/dunstrc" >/dev/null 2>"$work/dunst.log" &
pids+=($!)
wait_for "dunst" dunstctl count
cat > "$work/home/.config/lxqt/lxqt.conf" <<EOF
[General]
icon_theme=breeze
theme=KDE-Plasma
EOF
cat > "$work/home/.config/lxqt/panel.conf" <<EOF
panels=panel1

[panel1]
plugins=mainmenu,taskbar,statusnotifier,showdesktop
position=Bottom
desktop=0
panelSize=36
iconSize=22
lineCount=1

[mainmenu]
type=mainmenu

[taskbar]
type=taskbar

[statusnotifier]
type=statusnotifier
alignment=Right

[showdesktop]
type=showdesktop
alignment=Right
EOF
# The lxqt platform theme gives Qt the icon theme of lxqt.conf (else icons from the item's
# IconName come out empty).
mkdir -m 700 "$work/runtime"
HOME=$work/home XDG_CONFIG_HOME=$work/home/.config XDG_RUNTIME_DIR=$work/runtime \
  QT_QPA_PLATFORM=xcb QT_QPA_PLATFORMTHEME=lxqt lxqt-panel >"$work/panel.log" 2>&1 &
pids+=($!)
# The panel's statusnotifier plugin is the StatusNotifierWatcher.
wait_for "lxqt-panel's StatusNotifierWatcher" dbus-send --session --print-reply --dest=org.freedesktop.DBus \
  /org/freedesktop/DBus org.freedesktop.DBus.GetNameOwner string:org.kde.StatusNotifierWatcher
xsetroot -solid '#31546f'
sleep 1
shoot empty

echo "== spk-notifier, then a new release published and found"
HOME=$work/home XDG_CONFIG_HOME=$work/home/.config XDG_STATE_HOME=$work/home/state \
  "$bin/spk-notifier" --bus "$SPK_BUS_ADDRESS" --log-level debug 2>"$work/spk-notifier.log" &
pids+=($!)
notified() { grep -q "^$1|" "$work/notifications.log"; }
registered() {
  dbus-send --session --print-reply --dest=org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
    org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierWatcher \
    string:RegisteredStatusNotifierItems | grep -q StatusNotifierItem
}
wait_for "spk-notifier's item in the panel" registered
make_release "$work/repo" 2.0-1
"$bin/spkctl" check >/dev/null || [[ $? == 100 ]]
wait_for 'the "updates available" notification' notified '3 updates available'
sleep 1
shoot notified
# The notification: dunst's window.
eval "$(xdotool getwindowgeometry --shell "$(xdotool search --classname Dunst | head -1)")"
keep notified notification "${WIDTH}x${HEIGHT}+${X}+${Y}" 12

echo "== the tray icon and its tooltip"
# The icon is what changed in the panel since spk-notifier started. (The panel has no clock, so
# nothing else changes there, and the pictures are the same from one run to the next.)
panel=36
box=$(await_change empty icon 8 8 "${width}x$panel+0+$((height - panel))")
IFS='x+' read -r w h x y <<<"$box"
((w <= 64)) || { echo "screenshots.sh: more than the tray icon changed in the panel ($box)" >&2; exit 1; }
icon_x=$((x + w / 2)) icon_y=$((y + h / 2))
xdotool mousemove "$icon_x" "$icon_y"
box=$(await_change icon tooltip 60 20)
keep tooltip tray "$box" 16 corner 320

echo "== its menu"
xdotool mousemove 300 300
sleep 1
xdotool mousemove "$icon_x" "$icon_y" click 3
box=$(await_change icon menu-open 100 60 "${width}x$((height - panel))+0+0")
IFS='x+' read -r w h x y <<<"$box"
# The pointer on the first entry, "Install updates now" (moved twice: Qt does not highlight an
# entry for the first motion after the menu opened).
xdotool mousemove $((x + 60)) $((y + 10))
sleep 0.3
xdotool mousemove $((x + 64)) $((y + 14))
sleep 1
shoot menu
box=$(changed icon menu)
keep menu menu "$box" 16 corner

echo "== Install updates now, and its progress notification"
xdotool click 1
progressing() { awk -F'|' '$2 >= 20 && $2 <= 90 { found = 1 } END { exit !found }' "$work/notifications.log"; }
wait_for "a progress notification past 20 %" progressing
sleep 0.5
shoot progress
eval "$(xdotool getwindowgeometry --shell "$(xdotool search --classname Dunst | head -1)")"
keep progress progress "${WIDTH}x${HEIGHT}+${X}+${Y}" 12
wait_for 'the "Updates installed" notification' notified 'Updates installed'
"$work/root/usr/bin/plasma" | grep -q 2.0-1
echo "== done: $out"
