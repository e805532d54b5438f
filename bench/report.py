#!/usr/bin/env python3
"""Summarise bench/run's samples, per variant (fresh, aged): medians, spread, ratios to the old
tool (a) and to pacman (p, pu), the targets, and a run-order report showing whether a case drifts
across runs. Prints it and writes results.md (raw samples beside it)."""

import json
import os
import statistics
import time

env = os.environ
tmp = env["BENCH_TMP"]
stats = json.load(open(os.path.join(env["REPO"], "stats.json")))
pk = stats["packages"]
r1 = lambda key: sum(p["r1"][key] for p in pk.values())
changed = stats["changed"]
changed_xz = sum(pk[n]["r2"]["size"] for n in changed)
mib = 1 / 1024

variants = []
with open(os.path.join(tmp, "variants.tsv")) as f:
    for line in f:
        name, fs, load_start, load_end, used_end = line.rstrip("\n").split("\t")
        samples = {}
        with open(os.path.join(tmp, f"samples-{name}.tsv")) as s:
            for row in s:
                k, v = row.rstrip("\n").split("\t")
                samples.setdefault(k, []).append(float(v))
        variants.append((name, fs, load_start, load_end, used_end, samples))


def report(name, samples, used_end):
    med = lambda k: statistics.median(samples[k])

    def spread(k, scale=1.0, fmt="{:.3f}"):
        v = [x * scale for x in samples[k]]
        s = f"{fmt.format(min(v))} – {fmt.format(max(v))}"
        if len(v) > 1:
            s += f" (σ {fmt.format(statistics.stdev(v))})"
        return s

    a, p, pu = med("a"), med("p"), med("pu")
    rows = []
    verdicts = []

    def check(ok, what):
        verdicts.append(("✅" if ok else "❌") + " " + what)
        return ok

    def row(key, label, vs_a=None, vs_peer=None, peer=None):
        m = med(key)
        ratio_a = m / a
        ratio_p = m / peer if peer else None
        marks = []
        if vs_a is not None:
            marks.append(check(ratio_a <= vs_a, f"({key}) {ratio_a:.3f}× curl|tar ≤ {vs_a}×"))
        if vs_peer is not None:
            marks.append(check(ratio_p <= vs_peer, f"({key}) {ratio_p:.3f}× pacman ≤ {vs_peer}×"))
        target = " and ".join(
            t for t in [f"≤ {vs_a}× (a)" if vs_a is not None else "",
                        f"≤ {vs_peer}× pacman" if vs_peer is not None else ""] if t)
        rows.append((f"({key})", label, f"{m:.3f} s", spread(key), f"{ratio_a:.3f}×",
                     f"{ratio_p:.3f}×" if ratio_p is not None else "", target,
                     ("✅" if all(marks) else "❌") if marks else ""))

    row("a", "old tool: `curl \\| tar -xJ`, 7 packages in turn")
    if "a2" in samples:
        row("a2", "reference: the same, two pipelines at a time")
    row("p", "pacman -Sy, all 7 (fresh root and cache)")
    row("pu", f"pacman -Syu, 2 of 7 changed")
    row("b", "`spkctl install` all 7 (fresh root, empty cache)", 0.40, 0.50, p)
    row("c", f"`spkctl upgrade`, 2 of 7 changed ({' + '.join(changed)})", 0.18, 0.6, pu)
    row("d", "`spkctl upgrade`, nothing changed", 0.01)
    d_bytes = max(samples["d_bytes"])
    check(d_bytes == 0, f"(d) served {int(d_bytes)} tarball bytes")
    b_spread = max(samples["b"]) / min(samples["b"])
    check(b_spread <= 1.25, f"(b) max/min {b_spread:.2f} ≤ 1.25")
    for key, label, target in (("rss_idle", "spkd idle RSS (after start + one refresh)", 15),
                               ("rss_peak_b", "spkd peak RSS during (b) (VmHWM)", 64)):
        m = med(key) * mib
        ok = check(m <= target, f"{key} {m:.1f} MiB ≤ {target} MiB")
        rows.append(("(e)", label, f"{m:.1f} MiB", spread(key, scale=mib, fmt="{:.1f}"), "", "",
                     f"≤ {target} MiB", "✅" if ok else "❌"))

    lines = [f"### {name}" + (f" (image {used_end} full after the last run)" if name == "aged" else ""),
             "",
             "| | what | median | min – max (σ) | ratio to (a) | ratio to pacman | target | |",
             "|---|---|---:|---|---:|---:|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Run order (seconds, run 1 → last; drift = least-squares slope per run, as % of the median):", ""]
    lines += ["| | " + " | ".join(f"run {i + 1}" for i in range(len(samples["a"]))) + " | last/first | drift |",
              "|---|" + "---:|" * (len(samples["a"]) + 2)]
    for key in ("a", "b", "c", "p", "pu"):
        v = samples[key]
        n = len(v)
        mean_x = (n - 1) / 2
        slope = sum((i - mean_x) * (x - statistics.mean(v)) for i, x in enumerate(v)) / \
            max(sum((i - mean_x) ** 2 for i in range(n)), 1e-9)
        lines.append(f"| ({key}) | " + " | ".join(f"{x:.3f}" for x in v) +
                     f" | {v[-1] / v[0]:.2f} | {100 * slope / statistics.median(v):+.1f} %/run |")
    lines += ["", *[f"- {v}" for v in verdicts]]
    lines += [f"- Tarball bytes nginx served: (b) {med('b_bytes') / 1e6:.1f} MB, "
              f"(c) {med('c_bytes') / 1e6:.1f} MB (the changed packages are {changed_xz / 1e6:.1f} MB), "
              f"(d) {int(d_bytes)} bytes (max over runs).",
              f"- CPU time (user+sys, median): (a) curl+tar+xz {med('a_cpu'):.2f} s; pacman in (p) "
              f"{med('p_cpu'):.2f} s; spkd in (b) {med('b_cpu'):.2f} s ({med('b_cpu') / med('b'):.2f} cores "
              f"busy on average), in (c) {med('c_cpu'):.2f} s.",
              f"- (a) including a final `sync` of what tar left in the page cache: {med('a_sync'):.3f} s "
              f"(spkd syncs inside (b)); spkd peak RSS during (c): {med('rss_peak_c') * mib:.1f} MiB; "
              f"idle RSS after the runs: {med('rss_idle_end') * mib:.1f} MiB."]
    return lines


out = ["## spk benchmark results", ""]
for name, fs, load_start, load_end, used_end, samples in variants:
    out += report(name, samples, used_end) + [""]

name, fs, load_start, load_end, used_end, _ = variants[0]
out += [
    f"- Repository (scale {stats['scale']}): 7 packages, {r1('files')} files, {r1('links')} symlinks, "
    f"{r1('dirs')} directories; {r1('bytes') / 1e6:.1f} MB unpacked (text {r1('text') / 1e6:.0f} MB, "
    f"machine-code-like {r1('binary') / 1e6:.0f} MB, random {r1('random') / 1e6:.0f} MB), "
    f"{r1('size') / 1e6:.1f} MB as single-block `xz -6` archives; served by nginx on 127.0.0.1. "
    f"pacman gets the same members after a `.PKGINFO`, as `xz -6` `.pkg.tar.xz` in a `repo-add` "
    f"repository on the same nginx.",
    f"- pacman: {env['PACMAN_VERSION']} (Debian's pacman-package-manager), `--root`/`--dbpath`/"
    f"`--cachedir` in the fresh root, `ParallelDownloads = 2`, `SigLevel = Never`, no hooks; "
    f"`-Sy` then `-Syu`. The roots of the three tools are checked to hold the same files and bytes.",
    f"- Install roots on {fs}; the `aged` variant keeps every root and cache on one image; nothing "
    f"dropped from the page cache (the tarballs are served from it for every tool alike); an untimed "
    f"`sync -f` before each timed step.",
    f"- {env['RUNS']} runs per variant, interleaved, after one warm-up pass; spkd `parallel_downloads` "
    f"= {env['PARALLEL_EFFECTIVE']}; a fresh spkd per run on a private dbus-daemon.",
    f"- Machine: {env['NCPU']} CPUs, Linux {env['KERNEL']}, {env['XZ_VERSION']}; load average "
    + "; ".join(f"{v[0]}: {v[2]} at start, {v[3]} at end" for v in variants)
    + " (it counts the benchmark's own 1–2 busy processes; other work shares the machine).",
    f"- spk {env['COMMIT']}, {time.strftime('%Y-%m-%d %H:%M %Z')}; command: "
    f"`SPK_BENCH_SCALE={env['SCALE']} SPK_BENCH_RUNS={env['RUNS']} bench/run`.",
]

text = "\n".join(out) + "\n"
print()
print(text)
with open(env["OUT"], "w") as f:
    f.write(text)
raw = os.path.splitext(env["OUT"])[0] + ".samples.tsv"
with open(raw, "w") as dst:
    for name, *_rest in variants:
        with open(os.path.join(tmp, f"samples-{name}.tsv")) as src:
            for line in src:
                dst.write(f"{name}\t{line}")
