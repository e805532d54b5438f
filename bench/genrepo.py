#!/usr/bin/env python3
"""Build the benchmark's package repository: the 7 SmechOS package names, ~9,000 files and
~300 MB unpacked at scale 1.0, as `.tar.xz` archives compressed like today's releases
(`xz -6 -T1`: one block per archive), with an `index.json` (format 1). Then a second release in
which the packages named in --changed were rebuilt (every file's content changes, a few files
are dropped and a few are added); the others are byte-identical copies.

Content is synthetic and deterministic (seeded), in three kinds, chosen to behave like a real
distribution under xz (ratio and decode speed):
  text   — word soup with a Zipf vocabulary, newlines, punctuation and repeated lines (docs,
           headers, QML, translations, configs): xz ratio ~0.19, decodes at ~90 MB/s out
  binary — machine-code-like bytes: skewed byte histogram plus copies of recent chunks
           (shared objects, kernel modules, firmware): xz ratio ~0.25, ~60 MB/s out, like
           the real shared objects of /usr/lib on this machine
  random — incompressible (compressed images, signed blobs, vmlinuz): ratio 1.0
plus directories and symlinks (library sonames, firmware aliases).

Usage: genrepo.py OUTDIR SCALE [--changed "plasma mesa-graphics"] [--jobs N]
Writes OUTDIR/r1/{*.tar.xz,index.json}, OUTDIR/r2/{...}, OUTDIR/stats.json.
"""

import argparse
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor

MTIME = 1764028800  # 2025-11-25

# Per package: kind, version, description, and file classes
#   (count, min_size, max_size, content, directory pool, extension, mode)
# Sizes are log-uniform between min and max. Classes with fewer than 10 files keep their count
# when scaled and scale their sizes instead.
PACKAGES = [
    ("kernel-modules", "system", "6.12.8-1", "Linux 6.12.8 kernel, modules and System.map", [
        (2400, 3_000, 60_000, "binary",
         ["lib/modules/6.12.8-smech/kernel/drivers/{a}/{b}", "lib/modules/6.12.8-smech/kernel/{a}"],
         ".ko", 0o644),
        (8, 100_000, 1_000_000, "text", ["lib/modules/6.12.8-smech"], "", 0o644),
        (1, 12_000_000, 12_000_000, "random", ["boot"], "", 0o644),
        (1, 5_000_000, 5_000_000, "text", ["boot"], ".map", 0o644),
    ]),
    ("firmware", "system", "20251125-1", "Linux firmware blobs", [
        (1000, 1_000, 150_000, "binary", ["lib/firmware/{a}", "lib/firmware/{a}/{b}"], ".bin", 0o644),
        (60, 20_000, 600_000, "random", ["lib/firmware/{a}"], ".fw", 0o644),
        (140, 1_000, 50_000, "text", ["usr/share/licenses/firmware"], ".txt", 0o644),
    ]),
    ("bootloader-grub", "system", "2.12-3", "GRUB 2.12 boot loader", [
        (280, 1_000, 60_000, "binary", ["usr/lib/grub/x86_64-efi", "usr/lib/grub/i386-pc"], ".mod", 0o644),
        (60, 5_000, 60_000, "text", ["usr/share/locale/{a}/LC_MESSAGES"], ".mo", 0o644),
        (50, 100, 10_000, "text", ["usr/lib/grub/x86_64-efi", "etc/grub.d"], ".lst", 0o644),
        (8, 100_000, 1_000_000, "binary", ["usr/bin", "usr/sbin"], "", 0o755),
        (2, 1_000_000, 2_000_000, "binary", ["usr/share/grub"], ".pf2", 0o644),
        (20, 5_000, 200_000, "text", ["usr/share/doc/grub"], ".html", 0o644),
    ]),
    ("kde-frameworks", "userland", "6.20.0-1", "KDE Frameworks 6.20", [
        (90, 50_000, 1_200_000, "binary", ["usr/lib"], ".so", 0o755),
        (900, 500, 60_000, "text", ["usr/include/KF6/{a}", "usr/share/qlogging-categories6",
                                    "usr/lib/cmake/KF6{a}", "usr/lib/qml/org/kde/{a}"], ".h", 0o644),
        (500, 2_000, 80_000, "text", ["usr/share/locale/{a}/LC_MESSAGES"], ".mo", 0o644),
        (120, 5_000, 300_000, "text", ["usr/share/doc/kf6/{a}"], ".html", 0o644),
        (300, 500, 20_000, "random", ["usr/share/icons/breeze/{a}/{b}"], ".png", 0o644),
    ]),
    ("plasma", "userland", "6.6.5-1", "KDE Plasma 6.6.5 desktop", [
        (60, 30_000, 1_200_000, "binary", ["usr/lib", "usr/bin", "usr/lib/qt6/plugins/{a}"], ".so", 0o755),
        (1000, 300, 50_000, "text", ["usr/share/plasma/{a}/{b}", "usr/share/plasma/{a}/contents/ui",
                                     "usr/share/applications", "usr/share/kservices6"], ".qml", 0o644),
        (400, 2_000, 80_000, "text", ["usr/share/locale/{a}/LC_MESSAGES"], ".mo", 0o644),
        (60, 5_000, 300_000, "text", ["usr/share/doc/plasma/{a}"], ".html", 0o644),
        (200, 2_000, 200_000, "random", ["usr/share/wallpapers/{a}/contents/images",
                                         "usr/share/plasma/{a}/contents/images"], ".png", 0o644),
        (2, 1_500_000, 1_500_000, "random", ["usr/share/wallpapers/Next/contents/images"], ".jpg", 0o644),
    ]),
    ("qt6", "userland", "6.10.1-1", "Qt 6.10.1 libraries and plugins", [
        (25, 100_000, 5_000_000, "binary", ["usr/lib"], ".so", 0o755),
        (900, 300, 60_000, "text", ["usr/include/qt6/Qt{a}", "usr/include/qt6/Qt{a}/private"], ".h", 0o644),
        (30, 20_000, 400_000, "binary", ["usr/lib/qt6/plugins/{a}"], ".so", 0o755),
        (40, 10_000, 400_000, "text", ["usr/share/qt6/translations"], ".qm", 0o644),
        (100, 5_000, 300_000, "text", ["usr/share/doc/qt6/{a}"], ".html", 0o644),
    ]),
    ("mesa-graphics", "userland", "25.3.1-1", "Mesa 25.3.1 OpenGL/Vulkan drivers", [
        (1, 12_000_000, 12_000_000, "binary", ["usr/lib"], ".so", 0o755),
        (6, 200_000, 2_000_000, "binary", ["usr/lib", "usr/lib/dri"], ".so", 0o755),
        (300, 200, 20_000, "text", ["usr/include/{a}", "usr/share/vulkan/icd.d", "usr/share/drirc.d"], ".h", 0o644),
        (80, 1_000, 20_000, "binary", ["usr/share/mesa/{a}"], ".bin", 0o644),
    ]),
]

# Symlinks per package at scale 1.0: (count, directory, target directory relative to the link)
SYMLINKS = {
    "kernel-modules": (2, "lib/modules/6.12.8-smech", None),
    "firmware": (200, "lib/firmware", None),
    "bootloader-grub": (4, "usr/lib/grub", None),
    "kde-frameworks": (180, "usr/lib", None),
    "plasma": (60, "usr/lib", None),
    "qt6": (50, "usr/lib", None),
    "mesa-graphics": (40, "usr/lib/dri", None),
}

SYLLABLES = ["ka", "de", "plas", "ma", "qt", "me", "sa", "gl", "vk", "fw", "ko", "dr", "m",
             "ar", "io", "net", "usb", "pci", "snd", "gpu", "x", "core", "ui", "widget", "io",
             "fs", "ext", "blk", "i2c", "hid", "acpi", "amd", "intel", "nv", "rt", "wl", "en"]


def word(rng, lo=1, hi=3):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(lo, hi)))


class Content:
    """Deterministic generators of the three content kinds."""

    def __init__(self, seed):
        rng = random.Random(f"vocab-{seed}")
        letters = "abcdefghijklmnopqrstuvwxyz"
        vocab = set()
        while len(vocab) < 6000:
            n = max(1, min(14, int(rng.lognormvariate(1.6, 0.5))))
            vocab.add("".join(rng.choice(letters) for _ in range(n)))
        vocab = sorted(vocab)
        rng.shuffle(vocab)
        tokens = vocab + ["\n", "\n", "\n    ", "=", "{", "}", ";", "(", ")", ",", ".", "0", "1",
                          "true", "false", "#include", "import", "property", "return", "//"]
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(vocab))]
        total = sum(weights)
        # Structural tokens: ~1 newline per 9 words, some punctuation.
        extra = [0.06, 0.03, 0.02, 0.04, 0.015, 0.015, 0.03, 0.02, 0.02, 0.03, 0.03, 0.01, 0.01,
                 0.005, 0.005, 0.004, 0.004, 0.006, 0.006, 0.006]
        weights = [w / total * (1 - sum(extra)) for w in weights] + extra
        acc, self.cum = 0.0, []
        for w in weights:
            acc += w
            self.cum.append(acc)
        self.tokens = tokens
        # Byte histogram of machine code: lots of 0x00, common opcodes, the rest flat.
        hot = [0x00] * 60 + [0xFF] * 10 + [0x48] * 10 + [0x89] * 8 + [0x8B] * 8 + [0xE8] * 6 + \
              [0x0F] * 6 + [0x24] * 4 + [0x44] * 4 + [0x4C] * 4 + [0xC3] * 2 + [0x01] * 6 + \
              [0x20] * 4 + [0x10] * 4 + [0x08] * 4 + [0x40] * 4 + [0x83] * 4 + [0x74] * 3 + [0x75] * 3
        table = bytearray(256)
        r2 = random.Random(f"table-{seed}")
        for i in range(256):
            table[i] = hot[i] if i < len(hot) else r2.randrange(256)
        # 256 entries map a uniform byte to the skewed histogram (first len(hot) slots hot).
        self.table = bytes(table)

    def text(self, rng, size):
        words = rng.choices(self.tokens, cum_weights=self.cum, k=size // 5 + 16)
        out, n, rnd, rint = [], 0, rng.random, rng.randint
        for line in " ".join(words).split("\n"):
            if out and rnd() < 0.4:
                line = out[-rint(1, min(len(out), 64))]  # code and markup repeat lines
            out.append(line)
            n += len(line) + 1
            if n >= size:
                break
        s = "\n".join(out).encode()
        while len(s) < size:
            s += s[: size - len(s)]
        return s[:size]

    def binary(self, rng, size):
        # Tuned so that xz -6 behaves as on real shared objects of this machine
        # (ratio ~0.25, decode ~60 MB/s of output with xz 5.4).
        out = bytearray()
        randbytes, rnd, rint, table = rng.randbytes, rng.random, rng.randint, self.table
        while len(out) < size:
            r = rnd()
            n = len(out)
            if r < 0.67 and n > 256:
                # A copy of a recent chunk (repeated code sequences, relocations, tables).
                start = rint(max(0, n - 65536), n - 1)
                out += out[start:start + rint(8, 56)]
                if rnd() < 0.5:
                    out += randbytes(rint(1, 4))  # a changed immediate / address
            elif r < 0.72:
                out += bytes(rint(4, 40))  # zero padding
            else:
                out += randbytes(rint(6, 32)).translate(table)
        return bytes(out[:size])

    def random(self, rng, size):
        return rng.randbytes(size)

    def make(self, kind, rng, size):
        return getattr(self, kind)(rng, size)


def scaled_classes(classes, scale):
    out = []
    for count, lo, hi, kind, dirs, ext, mode in classes:
        if count >= 10:
            out.append((max(1, round(count * scale)), lo, hi, kind, dirs, ext, mode))
        else:
            out.append((count, max(64, int(lo * scale)), max(64, int(hi * scale)), kind, dirs, ext, mode))
    return out


def plan_package(name, classes, scale):
    """The file list of a package (paths, sizes, kinds, modes), independent of the release."""
    rng = random.Random(f"plan-{name}")
    subdirs_a = [word(rng, 1, 2) for _ in range(24)]
    subdirs_b = [word(rng, 1, 2) for _ in range(12)]
    files = []
    used = set()
    for ci, (count, lo, hi, kind, dirs, ext, mode) in enumerate(scaled_classes(classes, scale)):
        for i in range(count):
            d = rng.choice(dirs).format(a=rng.choice(subdirs_a), b=rng.choice(subdirs_b))
            while True:
                base = f"{word(rng)}{rng.choice(['', '-', '_'])}{word(rng, 1, 2)}"
                if ext == ".so":
                    base = f"lib{base}"
                path = f"{d}/{base}{ext}"
                if path not in used:
                    break
            used.add(path)
            size = int(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
            files.append({"path": path, "size": size, "kind": kind, "mode": mode, "class": ci})
    nlinks, ldir, _ = SYMLINKS[name]
    nlinks = max(1, round(nlinks * scale))
    links = []
    targets = [f for f in files if f["kind"] != "text"] or files
    for i in range(nlinks):
        t = rng.choice(targets)
        tdir, tbase = t["path"].rsplit("/", 1)
        lpath = f"{tdir}/{tbase}.{i % 9}" if tdir != ldir else f"{ldir}/{tbase}.{i}"
        if lpath in used:
            continue
        used.add(lpath)
        links.append({"path": lpath, "target": tbase})
    return files, links


def release_files(name, files, release):
    """Release 2 of a changed package drops ~3% of the files and adds ~3% new ones."""
    if release == 1:
        return files
    rng = random.Random(f"r2-{name}")
    kept = [f for f in files if rng.random() >= 0.03]
    added = []
    for f in rng.sample(files, max(1, len(files) * 3 // 100)):
        d, b = f["path"].rsplit("/", 1)
        added.append(dict(f, path=f"{d}/new-{b}"))
    return kept + added


def build_package(task):
    name, kind, version, desc, classes, scale, release, outdir = task
    files, links = plan_package(name, classes, scale)
    files = release_files(name, files, release)
    links = [l for l in links if any(f["path"].rsplit("/", 1)[-1] == l["target"] for f in files)]
    # The package's own version file: every build carries one.
    files = files + [{"path": f"usr/share/smechos/packages/{name}.version", "size": 0,
                      "kind": "version", "mode": 0o644, "class": -1}]
    content = Content(name)
    rng = random.Random(f"content-{name}-{release}")
    dirs = set()
    for p in [f["path"] for f in files] + [l["path"] for l in links]:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = [(d, "dir", None) for d in dirs] + [(f["path"], "file", f) for f in files] + \
              [(l["path"], "link", l) for l in links]
    entries.sort(key=lambda e: e[0].split("/"))
    path = os.path.join(outdir, f"{name}.tar.xz")
    with open(path + ".tmp", "wb") as out:
        xz = subprocess.Popen(["xz", "-6", "-T1", "-c"], stdin=subprocess.PIPE, stdout=out)
        totals = {"files": 0, "links": 0, "dirs": 0, "bytes": 0,
                  "text": 0, "binary": 0, "random": 0, "version": 0}
        with tarfile.open(fileobj=xz.stdin, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            for p, what, info in entries:
                ti = tarfile.TarInfo(p)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "root", "root"
                if what == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(ti)
                    totals["dirs"] += 1
                elif what == "link":
                    ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, info["target"]
                    tar.addfile(ti)
                    totals["links"] += 1
                else:
                    if info["kind"] == "version":
                        data = f"{name} {version}\n".encode()
                    else:
                        data = content.make(info["kind"], rng, info["size"])
                    ti.size, ti.mode = len(data), info["mode"]
                    tar.addfile(ti, io.BytesIO(data))
                    totals["files"] += 1
                    totals["bytes"] += len(data)
                    totals[info["kind"]] += len(data)
        xz.stdin.close()
        if xz.wait() != 0:
            raise RuntimeError(f"xz failed for {name}")
    os.rename(path + ".tmp", path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    entry = {
        "name": name, "version": version, "kind": kind, "file": f"{name}.tar.xz",
        "sha256": h.hexdigest(), "size": os.path.getsize(path),
        # Regular-file bytes plus 4 KiB per directory, as `du -sb` of the tree would say.
        "installed_size": totals["bytes"] + 4096 * totals["dirs"],
        "description": desc,
    }
    return entry, totals


def bump(version):
    base, rel = version.rsplit("-", 1)
    return f"{base}-{int(rel) + 1}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("scale", type=float)
    ap.add_argument("--changed", default="plasma mesa-graphics")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    changed = args.changed.split()
    names = [p[0] for p in PACKAGES]
    for c in changed:
        if c not in names:
            sys.exit(f"genrepo: --changed names unknown package {c}")
    r1, r2 = os.path.join(args.outdir, "r1"), os.path.join(args.outdir, "r2")
    os.makedirs(r1, exist_ok=True)
    os.makedirs(r2, exist_ok=True)
    tasks = [(n, k, v, d, c, args.scale, 1, r1) for n, k, v, d, c in PACKAGES]
    tasks += [(n, k, bump(v), d, c, args.scale, 2, r2) for n, k, v, d, c in PACKAGES if n in changed]
    # Largest first so the pool stays busy to the end.
    tasks.sort(key=lambda t: -sum(c[0] * (c[1] + c[2]) / 2 for c in scaled_classes(t[4], t[5])))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(build_package, tasks))
    by = {(t[0], t[6]): r for t, r in zip(tasks, results)}
    stats = {"scale": args.scale, "changed": changed, "packages": {}}
    for rel, d in ((1, r1), (2, r2)):
        entries = []
        for n in names:
            if rel == 2 and n not in changed:
                src = os.path.join(r1, f"{n}.tar.xz")
                dst = os.path.join(r2, f"{n}.tar.xz")
                if os.path.exists(dst):
                    os.remove(dst)
                os.link(src, dst)
                entry, totals = by[(n, 1)]
            else:
                entry, totals = by[(n, rel)]
            entries.append(entry)
            stats["packages"].setdefault(n, {})[f"r{rel}"] = dict(totals, size=entry["size"])
        index = {"format": 1, "release": "2026.11.25" if rel == 1 else "2026.12.09",
                 "packages": entries}
        with open(os.path.join(d, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
            f.write("\n")
    with open(os.path.join(args.outdir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    tot = lambda key, rel="r1": sum(p[rel][key] for p in stats["packages"].values())
    print(f"genrepo: scale {args.scale}: {tot('files')} files, {tot('links')} symlinks, "
          f"{tot('dirs')} dirs, {tot('bytes') / 1e6:.1f} MB unpacked "
          f"(text {tot('text') / 1e6:.0f}, binary {tot('binary') / 1e6:.0f}, random {tot('random') / 1e6:.0f}), "
          f"{tot('size') / 1e6:.1f} MB as xz", file=sys.stderr)


if __name__ == "__main__":
    main()
