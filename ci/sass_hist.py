"""Opcode histogram of one kernel's SASS (cuobjdump -sass output on stdin): which instructions dominate.
Usage: cuobjdump -sass -fun <mangled> lib.so | python ci/sass_hist.py"""
import collections
import re
import sys

ops = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s+/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)
    if m:
        ops[m.group(2).split(".")[0]] += 1
total = sum(ops.values())
print(f"total {total}")
for op, n in ops.most_common(40):
    print(f"{op:12s} {n:6d} {100 * n / total:5.1f}%")
