#!/usr/bin/env bash
# Record, as text, two things a person does while a transaction runs (docs/spkctl-cancel.txt):
# pressing Ctrl-C during `spkctl upgrade` and answering "y" (the bars stop, the question gets a
# clean line, the transaction is cancelled and the system stays as it was), and `spkctl
# monitor` joining an upgrade that another spkctl started. The demo repository (demo/lib.sh) is
# served on 127.0.0.1 at 1 MiB/s per tarball; both run on a 96x30 pseudo-terminal
# (demo/termrec.py). Exits non-zero (logs kept) if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source demo/lib.sh
out=${1:-docs/spkctl-cancel.txt}
demo_init debug

upgrade_waiting

python3 demo/termrec.py --cols 96 --rows 30 --frames 3 --code 1 \
  --answer 'Proceed?=y' --answer 'total 0:01=^C' --answer 'Cancel=y' \
  --prompt '# spkctl upgrade' --out "$work/cancel.txt" \
  --header "Ctrl-C during spkctl upgrade, answered y (recorded by demo/record-cancel.sh):" \
  -- "$bin/spkctl" upgrade
"$bin/spkctl" list --installed > "$work/after-cancel.txt"
grep -q '1.0-1' "$work/after-cancel.txt"

# Another spkctl (no terminal) runs the upgrade; monitor joins it a second later.
"$bin/spkctl" upgrade --yes >"$work/upgrade.log" 2>&1 &
upgrading=$!
sleep 1.5
python3 demo/termrec.py --cols 96 --rows 30 --frames 2 \
  --prompt '# spkctl monitor' --out "$work/monitor.txt" \
  --header "spkctl monitor joining an upgrade started elsewhere 1.5 s earlier:" \
  -- "$bin/spkctl" monitor
wait "$upgrading"

{
  cat "$work/cancel.txt"
  echo
  echo "# spkctl list --installed      (afterwards: nothing changed)"
  cat "$work/after-cancel.txt"
  echo
  cat "$work/monitor.txt"
} > "$out"
echo "== wrote $out"
