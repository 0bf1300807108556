#!/usr/bin/env python3
"""check-prefix.py BLOCK FILE — FILE must be a prefix of the stream
kill-guest.sh writes: chunk i = b"chunk %08d\\n" % i + BLOCK. Prints what it
found; exit 0 when FILE is such a prefix (any length, 0 included)."""
import sys

block = open(sys.argv[1], "rb").read()
size = 0
with open(sys.argv[2], "rb") as f:
    i = 0
    while True:
        want = b"chunk %08d\n" % i + block
        got = f.read(len(want))
        if got != want[:len(got)]:
            at = next(k for k in range(len(got)) if got[k] != want[k])
            print(f"byte {size + at} differs from the stream the guest wrote (chunk {i})")
            sys.exit(1)
        size += len(got)
        if len(got) < len(want):
            break
        i += 1
print(f"{size} bytes, a prefix of the stream ({i} whole chunks of {len(block) + 15} bytes)")
