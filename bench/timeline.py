#!/usr/bin/env python3
"""Timeline of one spk transaction, observed from outside spkd:

  timeline.py sample PID ROOT OUT     every 20 ms until killed: per-thread CPU ticks of PID,
                                      sizes of ROOT/var/cache/spk/* (the tee'd download of each
                                      package grows as the pipeline consumes it; `.part` becomes
                                      `<sha>.tar.xz` when the package is staged and verified) and
                                      the packages in ROOT/var/lib/spk/staging (a package's
                                      directory goes when its commit completed)
  timeline.py report OUT INDEX T0 T1  when each package streamed and committed, and how many
                                      cores spkd kept busy in each phase

Signals (Progress) are not used: they are delivered late while a commit runs.
"""

import json
import os
import sys
import time


def sample(pid, root, out):
    hz = os.sysconf("SC_CLK_TCK")
    cache = os.path.join(root, "var/cache/spk")
    staging = os.path.join(root, "var/lib/spk/staging")
    with open(out, "w") as f:
        while os.path.exists(f"/proc/{pid}"):
            t = time.time()
            threads = {}
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    try:
                        s = open(f"/proc/{pid}/task/{tid}/stat").read()
                        name = s[s.index("(") + 1:s.rindex(")")]
                        rest = s[s.rindex(")") + 2:].split()
                        threads[tid] = [name, (int(rest[11]) + int(rest[12])) / hz]
                    except (OSError, ValueError):
                        pass
            except OSError:
                break
            files = {}
            try:
                for e in os.scandir(cache):
                    try:
                        files[e.name] = e.stat().st_size
                    except OSError:
                        pass
            except OSError:
                pass
            try:
                staged = sorted(os.listdir(staging))
            except OSError:
                staged = []
            rss = 0
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            except OSError:
                pass
            f.write(json.dumps({"t": t, "cpu": threads, "cache": files, "staging": staged,
                                "rss": rss}) + "\n")
            f.flush()
            time.sleep(0.02)


def report(out, index_path, t0, t1):
    rows = [json.loads(l) for l in open(out) if l.strip()]
    index = json.load(open(index_path))
    by_sha = {p["sha256"]: p for p in index["packages"]}
    pk = {}
    for r in rows:
        t = r["t"]
        for fname, size in r["cache"].items():
            sha = fname.split(".")[0]
            p = by_sha.get(sha)
            if not p:
                continue
            d = pk.setdefault(p["name"], {"size": p["size"]})
            if fname.endswith(".part"):
                if size > 0:
                    d.setdefault("first", t)
                d["last_part"] = t
            elif fname.endswith(".tar.xz") and "staged" not in d:
                d["staged"] = t
        for name in r["staging"]:
            if name in pk or name in {p["name"] for p in index["packages"]}:
                d = pk.setdefault(name, {"size": 0})
                d.setdefault("staging_seen", t)
                d["staging_last"] = t
    # A staging directory that disappeared after the package was staged: its commit ended.
    for name, d in pk.items():
        if "staging_last" in d:
            later = [r["t"] for r in rows if r["t"] > d["staging_last"]]
            if later and "staged" in d:
                d["committed"] = min(later)

    def busy(a, b):
        """Cores busy in [a, b] and CPU seconds per thread name (threads that ended inside the
        window count with their last sample)."""
        inside = [r for r in rows if a - 0.025 <= r["t"] <= b + 0.025]
        if len(inside) < 2 or b - a < 0.01:
            return float("nan"), {}
        first, last = {}, {}
        for r in inside:
            for tid, (name, cpu) in r["cpu"].items():
                first.setdefault(tid, (name, cpu))
                last[tid] = (name, cpu)
        per = {}
        for tid, (name, cpu) in last.items():
            key = "spkd (main)" if name == "spkd" else name
            per[key] = per.get(key, 0) + cpu - first[tid][1]
        return sum(per.values()) / (inside[-1]["t"] - inside[0]["t"]), per

    rel = lambda t: f"{t - t0:6.2f}" if t is not None else "     ?"
    print(f"transaction: {t1 - t0:.2f} s (spkctl start → exit)")
    print(f"{'package':<16} {'MB xz':>6} {'streaming (from → staged)':>26} {'MB/s xz':>8} {'committed at':>13}")
    pk = {n: d for n, d in pk.items() if "first" in d or "staging_seen" in d}
    for name, d in sorted(pk.items(), key=lambda kv: kv[1].get("first", 1e20)):
        a, b = d.get("first"), d.get("staged")
        dur = (b - a) if a and b else None
        speed = f"{d['size'] / 1e6 / dur:8.1f}" if dur else "       ?"
        print(f"{name:<16} {d['size'] / 1e6:6.1f} {rel(a)} → {rel(b)} ({dur or 0:5.2f} s) {speed} {rel(d.get('committed')):>13}")
    firsts = [d["first"] for d in pk.values() if "first" in d]
    staged = [d["staged"] for d in pk.values() if "staged" in d]
    commits = sorted(d["committed"] for d in pk.values() if "committed" in d)
    phases = []
    if firsts and staged:
        phases.append(("resolve: refresh, plan, first byte", t0, min(firsts)))
        phases.append(("streaming: download→sha→xz→tar→staging", min(firsts), max(staged)))
    if staged and commits:
        phases.append(("commit all: syncfs, preflight, renames, db", max(staged), commits[-1]))
        phases.append(("after the last commit → spkctl exits", commits[-1], t1))
    print()
    print(f"{'phase':<44} {'from':>6} {'to':>6} {'s':>6} {'cores':>6} {'max RSS':>8}  CPU s by thread")
    for label, a, b in phases + [("whole transaction", t0, t1)]:
        cores, per = busy(a, b)
        top = ", ".join(f"{n} {v:.2f}" for n, v in sorted(per.items(), key=lambda kv: -kv[1]) if v > 0.005)
        rss = max((r.get("rss", 0) for r in rows if a <= r["t"] <= b), default=0) / 1024
        print(f"{label:<44} {rel(a)} {rel(b)} {b - a:6.2f} {cores:6.2f} {rss:6.1f} MiB  {top}")


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        report(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
