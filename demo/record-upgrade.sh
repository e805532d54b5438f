#!/usr/bin/env bash
# Record `spkctl upgrade` at a terminal as text: docs/spkctl-upgrade.txt gets a few screens
# taken while the bars move, and the final one. The demo repository (demo/lib.sh) is served
# on 127.0.0.1 with each tarball sent at 1 MiB/s, so the download lasts a few seconds; spkctl
# runs on a 96x30 pseudo-terminal (demo/termrec.py), where it shows the plan, is answered `y`
# at "Proceed?", and draws its progress. Fully automatic: exits non-zero (logs kept) if
# anything fails or nothing was drawn between the answer and the end.
# Needs what demo/run needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source demo/lib.sh
out=${1:-docs/spkctl-upgrade.txt}
demo_init debug

upgrade_waiting

mkdir -p "$(dirname "$out")"
python3 demo/termrec.py --cols 96 --rows 30 --answer 'Proceed?=y' --frames 3 \
  --prompt '# spkctl upgrade' --out "$work/recording.txt" \
  --header "spkctl upgrade on a 96x30 pseudo-terminal, recorded by demo/record-upgrade.sh: the demo
repository on 127.0.0.1, each download sent at 1 MiB/s. Moments while the bars move, then
the end." \
  -- "$bin/spkctl" upgrade
mv "$work/recording.txt" "$out"
echo "== wrote $out"
