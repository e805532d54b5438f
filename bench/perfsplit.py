#!/usr/bin/env python3
"""Split a `perf record --call-graph dwarf` profile of spkd into the work it does, reading
`perf script` output on stdin: each sample goes to the first matching bucket of its call chain
(leaf first), so the table adds up to 100 %. Also lists the callers of memcpy/memset.

Usage: perf script -i perf.data | perfsplit.py
"""

import collections
import re
import sys

# (bucket, regex on a frame's symbol), tried leaf → root for each rule in order.
RULES = [
    ("xz: integrity check (lzma_crc64)", r"lzma_crc64|lzma_check_update"),
    ("xz: LZMA decode (lzma_decode, dict copies)", r"lzma_decode|lzma2_decode|decode_buffer|dict_repeat|lz_decode"),
    ("sha256 of the stream (verify.rs Verified)", r"sha2::.*|sha256.*", r"^<spk_engine::verify::Verified<"),
    ("sha256 per file (unpack.rs write_file)", r"sha2::.*|sha256.*"),
    ("cache tee write (verify.rs → write(2))", r"", r"^<spk_engine::verify::Verified<", r"write_all|ksys_write|vfs_write|__libc_write|\bwrite\b"),
    ("file data write(2) (unpack.rs write_file)", r"ksys_write|vfs_write|ext4_buffered_write_iter|generic_perform_write"),
    ("file create/open (openat, mkdir, symlink)", r"do_sys_openat2|path_openat|do_mkdirat|do_symlinkat|ext4_create|ext4_mkdir|__x64_sys_open"),
    ("commit: rename/unlink (commit.rs)", r"do_renameat2|__x64_sys_renameat|do_unlinkat|__x64_sys_unlinkat"),
    ("syncfs/fdatasync (CPU part)", r"sync_filesystem|__x64_sys_syncfs|__x64_sys_fdatasync|ext4_sync_file"),
    ("close/getdents/stat (incl. staging cleanup)", r"__x64_sys_close|__x64_sys_getdents64|__x64_sys_newfstatat|__x64_sys_statx|remove_dir_all"),
    ("database: redb + JSON (db.rs)", r"redb::|spk_engine::db::|serde_json"),
    ("tar parsing (astral-tokio-tar)", r"tokio_tar::"),
    ("entry checks + manifest (unpack.rs Stager)", r"spk_engine::unpack::|spk_engine::entry_path::"),
    ("network receive (hyper/reqwest/tcp)", r"hyper::|reqwest::|tcp_recvmsg|__x64_sys_recvfrom"),
    ("D-Bus (zbus)", r"zbus::|zvariant::"),
    ("tokio runtime / scheduling", r"tokio::runtime::|__x64_sys_futex|__x64_sys_epoll_wait|schedule"),
    ("page faults / memory", r"exc_page_fault|asm_exc_page_fault|malloc|free|realloc|mmap"),
]
RULES = [(r[0], re.compile(r[1]) if r[1] else None, *(re.compile(x) for x in r[2:])) for r in RULES]

buckets = collections.Counter()
mem_callers = collections.Counter()
leaves = collections.Counter()
total = 0
sample = []


def frames_of(lines):
    out = []
    for l in lines:
        m = re.match(r"\s*[0-9a-f]+ (.+?)(\+0x[0-9a-f]+)? \((.*)\)$", l)
        if m:
            out.append(m.group(1))
    return out


def account(fr):
    global total
    if not fr:
        return
    total += 1
    leaves[fr[0][:90]] += 1
    if re.search(r"mem(cpy|move|set)", fr[0]):
        caller = next((f for f in fr[1:] if not re.search(r"mem(cpy|move|set)|^copy_|^_copy", f)), "?")
        mem_callers[(fr[0][:32], caller[:100])] += 1
    for rule in RULES:
        name, pat = rule[0], rule[1]
        extra = rule[2:]
        if name.startswith("cache tee"):
            # a write(2) below Verified::poll_read
            if any(extra[0].search(f) for f in fr) and any(extra[1].search(f) for f in fr[:12]):
                buckets[name] += 1
                return
            continue
        if pat is not None and any(pat.search(f) for f in fr):
            if extra and not any(extra[0].search(f) for f in fr):
                continue
            buckets[name] += 1
            return
    buckets["other: " + fr[0][:60]] += 1


for line in sys.stdin:
    if not line.strip():
        account(frames_of(sample[1:]))
        sample = []
    else:
        sample.append(line.rstrip("\n"))
account(frames_of(sample[1:]))

print(f"{total} samples")
print(f"{'where the CPU time goes':<52} {'share':>6}")
other = 0
for name, n in buckets.most_common():
    if name.startswith("other: "):
        other += n
        continue
    print(f"{name:<52} {100 * n / total:5.1f}%")
print(f"{'other':<52} {100 * other / total:5.1f}%")
print()
print("memcpy/memset: callers")
for (leaf, caller), n in mem_callers.most_common(8):
    print(f"  {100 * n / total:5.1f}%  {leaf} ← {caller}")
print()
print("top leaf functions")
for leaf, n in leaves.most_common(15):
    print(f"  {100 * n / total:5.1f}%  {leaf}")
