#!/usr/bin/env bash
# Regenerates crates/kmem-malloc/link/startup.ld, the linker script that gathers the code a
# process runs at start-up under LD_PRELOAD=libkmem_malloc.so (booting the global machine in
# its first malloc, creating the kmalloc caches, the first slabs of each size, the fast paths)
# at the start of the library's `.text`, ahead of the rest of its code.
#
# Why: the kernel maps a shared object's text on demand, 64 KiB around each faulting address
# (fault-around). Scattered through the library's 650 KiB of text, the 140 KiB that start-up
# runs touched 11 of those windows; gathered, three. That is five page faults and about
# 0.04 ms less for every `ls /` (issue 13's start-up budget is 0.5 ms over glibc).
#
# How: runs the start-up probe (one malloc) and `ls -la / /usr /etc` under callgrind with the
# library preloaded, lists the library's functions that ran, in the order they first ran, and
# writes one input-section pattern per function: its mangled name without the trailing hash
# (`17h<16 hex digits>E`), so the script survives rebuilds and compiler updates; a renamed
# function drops out of the group (crates/kmem-malloc/tests/startup_layout.rs checks that every
# kmem pattern still matches a function of the library and that they lie together). The
# precompiled standard library's own functions have v0 names (`_R...`), whose crate
# disambiguators (`Cs<hash>_`) change with the toolchain: their patterns have `Cs*_` there.
# Run it after changing what start-up runs, and commit the script with the change.
#
# The script defines the output section `.text` itself, with only these patterns, inserted
# after `.fini` (where the linker would put `.text`); lld then appends every other `.text.*`
# input section to it as usual. One `.text`, not a second code section: valgrind symbolises
# only the code of an object's `.text`. (GNU ld makes it a second `.text` after its own; the
# library works the same.)
#
# Usage: scripts/startup_layout.sh     (needs valgrind, cc, nm, python3; about 30 s after the
# build). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
(cd crates/kmem-malloc && CARGO_TARGET_DIR="$target/kmem-malloc-pie" cargo build -q --release)
lib="$target/kmem-malloc-pie/release/libkmem_malloc.so"
out=crates/kmem-malloc/link/startup.ld
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cc -O1 -fno-builtin -o "$tmp/startup" crates/kmem-malloc/tests/c/startup.c
# valgrind cannot map the global machine's default 64 GiB hotplug reserve.
export KMEM_RAM_MAX=8G
run() { # name command...
    local name="$1"
    shift
    LD_PRELOAD="$lib" valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.cg" --dump-instr=yes \
        --compress-pos=no --compress-strings=no "$@" >/dev/null 2>"$tmp/$name.log" \
        || { cat "$tmp/$name.log" >&2; exit 1; }
}
run startup "$tmp/startup"
run ls ls -la / /usr /etc

python3 - "$lib" "$out" "$tmp/startup.cg" "$tmp/ls.cg" <<'EOF'
import bisect, re, subprocess, sys

lib, out, cgs = sys.argv[1], sys.argv[2], sys.argv[3:]
nm = subprocess.run(["nm", "-S", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
funcs = []
for line in nm.splitlines():
    p = line.split(None, 3)
    if len(p) == 4 and p[2] in "tTwW":
        funcs.append((int(p[0], 16), int(p[1], 16), p[3]))
funcs.sort()
starts = [f[0] for f in funcs]
malloc_at = next(f[0] for f in funcs if f[2] == "malloc")
names, seen, size = [], set(), 0
for cg in cgs:
    # callgrind's addresses are the object's, give or take the distance between its text's
    # file offset and its address (which the layout this script makes changes): the lowest
    # address callgrind has for `malloc` (its entry, which ran) gives the difference.
    obj = fn = None
    rows, entry = [], None
    for line in open(cg):
        if line.startswith("ob="):
            obj = line[3:].strip()
            continue
        if line.startswith("fn="):
            fn = line[3:].strip()
            continue
        m = re.match(r"^(0x[0-9a-f]+)\s", line)
        if not (m and obj and obj.endswith("libkmem_malloc.so")):
            continue
        a = int(m.group(1), 16)
        rows.append(a)
        if fn == "malloc":
            entry = a if entry is None else min(entry, a)
    if entry is None:
        print(f"startup_layout: valgrind named no malloc in libkmem_malloc.so ({cg})", file=sys.stderr)
    bias = 0 if entry is None else entry - malloc_at
    for a in rows:
        a -= bias
        i = bisect.bisect_right(starts, a) - 1
        if i < 0 or not funcs[i][0] <= a < funcs[i][0] + funcs[i][1] or funcs[i][2] in seen:
            continue
        seen.add(funcs[i][2])
        names.append(funcs[i][2])
        size += funcs[i][1]
patterns, done = [], set()
for n in names:
    if n.startswith("_R"):
        # A v0 name (the precompiled standard library's): its crates' disambiguators
        # (`Cs<hash>_`) change with the toolchain, the rest does not.
        p = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", n)
    else:
        m = re.match(r"^(.*17h)[0-9a-f]{16}E$", n)
        p = m.group(1) + "*" if m else n
    if p not in done:
        done.add(p)
        patterns.append(p)
with open(out, "w") as f:
    f.write("/* Generated by scripts/startup_layout.sh: do not edit. The library's functions that a\n")
    f.write("   process runs at start-up (first malloc, `ls -la`), gathered ahead of the rest of its\n")
    f.write(f"   text ({len(patterns)} patterns, {size // 1024} KiB when generated). build.rs passes this script\n")
    f.write("   to the linker; INSERT keeps the default layout for everything else, and the linker\n")
    f.write("   appends the rest of the code to this `.text`. */\n")
    f.write("SECTIONS\n{\n  .text :\n  {\n")
    for p in patterns:
        f.write(f"    *(.text.{p} .text.unlikely.{p})\n")
    f.write("  }\n}\nINSERT AFTER .fini;\n")
print(f"startup_layout: wrote {out}: {len(patterns)} patterns, {size // 1024} KiB of code", file=sys.stderr)
EOF
