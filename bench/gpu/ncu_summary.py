#!/usr/bin/env python3
"""Aggregates `ncu --csv --page raw --metrics gpu__time_duration.sum` output by kernel name: total
and mean time and launch count per kernel, largest first, so one profiled step shows where its
time goes. Usage: ncu_summary.py NCU_CSV_LOG [steps]"""
import csv
import io
import sys
from collections import defaultdict


def main():
    text = open(sys.argv[1], errors="replace").read()
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    start = text.find('"ID"')
    if start < 0:
        print("no ncu CSV found in", sys.argv[1])
        print(text[-3000:])
        return
    rows = list(csv.reader(io.StringIO(text[start:])))
    head = rows[0]
    name_i = head.index("Kernel Name")
    t_i = head.index("gpu__time_duration.sum")
    tot = defaultdict(float)
    cnt = defaultdict(int)
    for r in rows[1:]:
        if len(r) <= t_i:
            continue
        try:
            v = float(r[t_i].replace(",", ""))
        except ValueError:
            continue  # the units row
        n = r[name_i][:90]
        tot[n] += v
        cnt[n] += 1
    unit = rows[1][t_i] if len(rows) > 1 else "?"
    total = sum(tot.values())
    print(f"kernel time per step: {total / steps:.1f} {unit} over {sum(cnt.values()) // steps} launches")
    for n, v in sorted(tot.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{v / steps:10.1f} {unit} {cnt[n] // steps:5d}x  {100 * v / total:5.1f}%  {n}")


if __name__ == "__main__":
    main()
