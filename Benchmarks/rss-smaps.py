#!/usr/bin/env python3
"""rss-smaps.py — where a process's resident memory is.

/proc/PID/smaps summed per mapping name (shared objects, the binary, [heap],
memfds; anonymous mappings as "[anon]", since smaps names neither thread
stacks nor malloc arenas), largest Rss first, in KiB, then VmRSS / VmHWM.

  Benchmarks/rss-smaps.py [--top N] [--anon] [--group] PID|SMAPS_FILE

  --top N   rows (default 25)
  --group   also sum by kind: the executable (the first mapping), the C and
            C++ runtime (libc, libm, ld.so, libstdc++, libgcc_s), the other
            shared objects, anonymous memory, memfds (guest RAM)
  --anon    also list each anonymous mapping: size, Rss, Private_Dirty
            (a thread stack is one below a 4 KiB ---p guard; a malloc
            arena is a 64 MiB reservation, mostly ---p)
"""
import argparse, os, re, sys

FIELDS = ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean")
HEAD = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")

def parse(text):
    maps = []
    for line in text.splitlines():
        m = HEAD.match(line)
        if m:
            name = os.path.basename(m.group(4)) if m.group(4) else "[anon]"
            maps.append({"name": name, "perms": m.group(3), "start": int(m.group(1), 16),
                         "size": (int(m.group(2), 16) - int(m.group(1), 16)) // 1024})
            continue
        key, _, rest = line.partition(":")
        if maps and key in FIELDS:
            maps[-1][key] = int(rest.split()[0])
    return maps

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--anon", action="store_true")
    ap.add_argument("--group", action="store_true")
    ap.add_argument("target")
    a = ap.parse_args()
    path = f"/proc/{a.target}/smaps" if a.target.isdigit() else a.target
    try:
        maps = parse(open(path).read())
    except OSError as e:
        sys.exit(f"rss-smaps: cannot read {path}: {e.strerror}")
    sums = {}
    for m in maps:
        s = sums.setdefault(m["name"], dict.fromkeys(FIELDS, 0) | {"maps": 0})
        s["maps"] += 1
        for f in FIELDS:
            s[f] += m.get(f, 0)
    rows = sorted(sums.items(), key=lambda kv: -kv[1]["Rss"])
    print(f"{'mapping':44} {'maps':>4} " + " ".join(f"{f:>13}" for f in FIELDS))
    for name, s in rows[:a.top]:
        print(f"{name[:44]:44} {s['maps']:4} " + " ".join(f"{s[f]:13}" for f in FIELDS))
    if len(rows) > a.top:
        rest = sum(s["Rss"] for _, s in rows[a.top:])
        print(f"{'(' + str(len(rows) - a.top) + ' more)':44} {'':4} {rest:13}")
    print(f"{'total':44} {len(maps):4} " + " ".join(f"{sum(m.get(f, 0) for m in maps):13}" for f in FIELDS))
    if a.group:
        runtime = ("libc.so", "libm.so", "ld-linux", "libstdc++.so", "libgcc_s.so")
        exe = maps[0]["name"] if maps else ""
        def kind(n):
            if n == exe: return "the executable (" + exe + ")"
            if n.startswith(runtime): return "C/C++ runtime (libc, libm, ld.so, libstdc++, libgcc_s)"
            if ".so" in n: return "other shared objects"
            if n.startswith("memfd:"): return "memfd (guest RAM)"
            if n in ("[anon]", "[heap]", "[stack]"): return "anonymous (heap, arenas, stacks, .bss)"
            return "other (" + n + ")"
        groups, objs = {}, {}
        for m in maps:
            k = kind(m["name"])
            groups[k] = groups.get(k, 0) + m.get("Rss", 0)
            objs.setdefault(k, set()).add(m["name"])
        print()
        for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
            n = len(objs[k])
            print(f"{v:8} KiB  {k}" + (f", {n} files" if "shared" in k or "runtime" in k else ""))
    if a.anon:
        print()
        for i, m in enumerate(maps):
            if m["name"] != "[anon]" or m["perms"] == "---p":
                continue
            below = maps[i - 1] if i > 0 else None
            kind = "stack?" if below and below["perms"] == "---p" and below["size"] == 4 else ""
            print(f"  {m['start']:#x} {m['perms']} {m['size']:9} KiB  Rss {m.get('Rss', 0):6}  "
                  f"Private_Dirty {m.get('Private_Dirty', 0):6} {kind}")
    if a.target.isdigit():
        for line in open(f"/proc/{a.target}/status"):
            if line.startswith(("VmRSS", "VmHWM", "Threads")):
                print(" ".join(line.split()))

main()
