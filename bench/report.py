#!/usr/bin/env python3
"""Summarise bench/run's samples: medians, spread, ratios to (a); print and write results.md."""

import json
import os
import statistics
import time

samples = {}
with open(os.environ["SAMPLES"]) as f:
    for line in f:
        k, v = line.rstrip("\n").split("\t")
        samples.setdefault(k, []).append(float(v))

stats = json.load(open(os.path.join(os.environ["REPO"], "stats.json")))
pk = stats["packages"]
r1 = lambda key: sum(p["r1"][key] for p in pk.values())
changed = stats["changed"]
changed_xz = sum(pk[n]["r2"]["size"] for n in changed)


def med(k):
    return statistics.median(samples[k])


def spread(k, unit="s", scale=1.0, fmt="{:.3f}"):
    v = [x * scale for x in samples[k]]
    s = f"{fmt.format(min(v))} – {fmt.format(max(v))}"
    if len(v) > 1:
        s += f" (σ {fmt.format(statistics.stdev(v))})"
    return s


a = med("a")
rows = []


def time_row(key, label, target=None):
    m = med(key)
    ratio = m / a
    verdict = ""
    if target is not None:
        verdict = "✅" if ratio <= target else "❌"
    rows.append((f"({key})" if len(key) <= 2 else key, label, f"{m:.3f} s", spread(key),
                 f"{ratio:.3f}×", f"≤ {target}×" if target is not None else "", verdict))


time_row("a", "old tool: `curl \\| tar -xJ`, 7 packages in turn")
if "a2" in samples:
    time_row("a2", "reference: the same, two pipelines at a time")
time_row("b", "`spkctl install` all 7 (fresh root, empty cache)", 0.5)
time_row("c", f"`spkctl upgrade`, 2 of 7 changed ({' + '.join(changed)})", 0.2)
time_row("d", "`spkctl upgrade`, nothing changed", 0.01)
# d: zero tarball bytes
d_bytes = max(samples["d_bytes"])
rows[-1] = rows[-1][:6] + ((rows[-1][6] if d_bytes == 0 else "❌") ,)

mib = 1 / 1024
for key, label, target in (("rss_idle", "spkd idle RSS (after start + one refresh)", 15),
                           ("rss_peak_b", "spkd peak RSS during (b) (VmHWM)", 64)):
    m = med(key) * mib
    rows.append(("(e)", label, f"{m:.1f} MiB", spread(key, scale=mib, fmt="{:.1f}"), "",
                 f"≤ {target} MiB", "✅" if m <= target else "❌"))

lines = []
lines.append(f"| | what | median | min – max (σ) | ratio to (a) | target | |")
lines.append("|---|---|---:|---|---:|---|---|")
for r in rows:
    lines.append("| " + " | ".join(r) + " |")

extra = []
extra.append(f"- (b) stretch target ≤ 0.4×: {'met' if med('b') / a <= 0.4 else 'not met'} "
             f"({med('b') / a:.3f}×).")
extra.append(f"- Tarball bytes nginx served: (b) {med('b_bytes') / 1e6:.1f} MB, "
             f"(c) {med('c_bytes') / 1e6:.1f} MB (the changed packages are {changed_xz / 1e6:.1f} MB), "
             f"(d) {int(d_bytes)} bytes (max over runs).")
extra.append(f"- CPU time (user+sys, median): (a) curl+tar+xz {med('a_cpu'):.2f} s; "
             f"spkd in (b) {med('b_cpu'):.2f} s ({med('b_cpu') / med('b'):.2f} cores busy on average), "
             f"in (c) {med('c_cpu'):.2f} s.")
extra.append(f"- (a) including a final `sync` of what tar left in the page cache: {med('a_sync'):.3f} s "
             f"(spkd syncs inside (b)); spkd peak RSS during (c): {med('rss_peak_c') * mib:.1f} MiB; "
             f"idle RSS after the runs: {med('rss_idle_end') * mib:.1f} MiB.")

env = os.environ
setup = [
    f"- Repository (scale {stats['scale']}): 7 packages, {r1('files')} files, {r1('links')} symlinks, "
    f"{r1('dirs')} directories; {r1('bytes') / 1e6:.1f} MB unpacked (text {r1('text') / 1e6:.0f} MB, "
    f"machine-code-like {r1('binary') / 1e6:.0f} MB, random {r1('random') / 1e6:.0f} MB), "
    f"{r1('size') / 1e6:.1f} MB as single-block `xz -6` archives; served by nginx on 127.0.0.1.",
    f"- Install roots on {env['FS_INFO']}; nothing dropped from the page cache (the tarballs are "
    f"served from it for every variant alike); an untimed `sync -f` before each timed step.",
    f"- {env['RUNS']} runs per variant, interleaved, after one warm-up pass; spkd `parallel_downloads` "
    f"= {env['PARALLEL_EFFECTIVE']}; a fresh spkd per run on a private dbus-daemon.",
    f"- Machine: {env['NCPU']} CPUs, Linux {env['KERNEL']}, {env['XZ_VERSION']}; "
    f"load average {env['LOAD_START']} at start, {env['LOAD_END']} at end (it counts the benchmark's own 1–2 busy processes; other work shares the machine).",
    f"- spk {env['COMMIT']}, {time.strftime('%Y-%m-%d %H:%M %Z')}; command: "
    f"`SPK_BENCH_SCALE={env['SCALE']} SPK_BENCH_RUNS={env['RUNS']} bench/run`.",
]

text = "\n".join(["## spk benchmark results", ""] + lines + [""] + extra + [""] + setup) + "\n"
print()
print(text)
with open(env["OUT"], "w") as f:
    f.write(text)
raw = os.path.splitext(env["OUT"])[0] + ".samples.tsv"
with open(env["SAMPLES"]) as src, open(raw, "w") as dst:
    dst.write(src.read())
