#!/usr/bin/env python3
"""Side-by-side file system benchmark: the same operations on several
directories in one run, alternated, printed with ratios to the first.

    fs-bench.py [--quick] [--runs N] NAME=DIR [NAME=DIR ...]

The first directory is the baseline ("host" for `vfsvm mount` vs native).
Operations: create+stat+unlink of 10,000 files, 1 GiB sequential write and
read (cold: page cache dropped; cached), 4 KiB random reads at queue depth 1
from a warm cache (fio, psync). Each figure is the median of --runs runs.
"""
import json, os, statistics, subprocess, sys, time

def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass

def metadata(d, n):
    t = time.perf_counter()
    sub = os.path.join(d, "bench-meta")
    os.mkdir(sub)
    for i in range(n):
        p = os.path.join(sub, f"f{i}")
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(p)
        os.unlink(p)
    os.rmdir(sub)
    return n / (time.perf_counter() - t), "op/s"

def seq_write(d, size):
    p = os.path.join(d, "bench-seq")
    buf = os.urandom(1 << 20)
    t = time.perf_counter()
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(size >> 20):
        os.write(fd, buf)
    os.fsync(fd)
    os.close(fd)
    return size / (time.perf_counter() - t) / (1 << 20), "MiB/s"

def seq_read(d, size, cold):
    p = os.path.join(d, "bench-seq")
    if cold:
        drop_caches()
    else:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
    t = time.perf_counter()
    fd = os.open(p, os.O_RDONLY)
    total = 0
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        total += len(b)
    os.close(fd)
    assert total == size, f"read {total} of {size}"
    return size / (time.perf_counter() - t) / (1 << 20), "MiB/s"

def rand_read(d, seconds):
    # The file is read once first and fio does not invalidate it: every
    # target reads from a warm page cache. (fio's --invalidate=1 dropped the
    # native file's cache but not the backing file behind a FUSE mount, so
    # native read from disk while the mount read from memory: the 47x of
    # the first mount table.)
    with open(os.path.join(d, "bench-seq"), "rb") as f:
        while f.read(1 << 20):
            pass
    out = subprocess.run(
        ["fio", "--name=qd1", f"--directory={d}", "--filename=bench-seq", "--rw=randread",
         "--bs=4k", "--iodepth=1", "--ioengine=psync", "--direct=0", f"--runtime={seconds}",
         "--time_based", "--output-format=json", "--invalidate=0"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["jobs"][0]["read"]["iops"], "IOPS"

def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    runs = 3
    if "--runs" in args:
        i = args.index("--runs"); runs = int(args[i + 1]); del args[i:i + 2]
    targets = [a.split("=", 1) for a in args]
    if not targets or any(len(t) != 2 for t in targets):
        sys.exit(__doc__)
    n = 2000 if quick else 10000
    size = (128 if quick else 1024) << 20
    secs = 3 if quick else 10
    ops = [
        (f"create+stat+unlink {n} files", lambda d: metadata(d, n)),
        (f"sequential write {size >> 20} MiB", lambda d: seq_write(d, size)),
        (f"sequential read {size >> 20} MiB, cold", lambda d: seq_read(d, size, True)),
        (f"sequential read {size >> 20} MiB, cached", lambda d: seq_read(d, size, False)),
        ("4 KiB random read, QD1, cached", lambda d: rand_read(d, secs)),
    ]
    results = {name: {} for name, _ in ops}
    for name, op in ops:
        samples = {t[0]: [] for t in targets}
        unit = ""
        for _ in range(runs):
            for label, d in targets:      # alternate targets within each run
                v, unit = op(d)
                samples[label].append(v)
        for label, _ in targets:
            results[name][label] = (statistics.median(samples[label]), unit)
    base = targets[0][0]
    # Columns as wide as their names (plus a space) so none run together.
    w = {l: max(16, len(l) + 1) for l, _ in targets}
    rw = {l: max(18, len(l) + len(base) + 2) for l, _ in targets}
    head = f"{'operation':42}" + "".join(f"{l:>{w[l]}}" for l, _ in targets) + "".join(f"{l + '/' + base:>{rw[l]}}" for l, _ in targets[1:])
    print(head)
    for name, _ in ops:
        row = results[name]
        line = f"{name:42}" + "".join(f"{row[l][0]:>{w[l] - 6}.0f} {row[l][1]:<5}" for l, _ in targets)
        line += "".join(f"{row[l][0] / row[base][0]:>{rw[l]}.2f}" for l, _ in targets[1:])
        print(line)
    for _, d in targets:
        try:
            os.unlink(os.path.join(d, "bench-seq"))
        except OSError:
            pass

if __name__ == "__main__":
    main()
