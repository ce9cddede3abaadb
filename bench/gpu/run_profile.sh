#!/usr/bin/env bash
# Where a decode step's time goes (issue 10's fixed cost, issue 11's deterministic overhead), one
# device call: for each SHAPES entry (batch:context:k) of one model, in fast and deterministic mode,
#   wall   longtail_gpu_bench --profile: wall time per Backend::forward (host planning, H2D, graph
#          replay, D2H, the one sync), median of 20;
#   graph  ncu --graph-profiling graph: the GPU time of the replayed graph alone, so
#          wall - graph = host work + copies + launch/sync latency;
#   kernel ncu per kernel (graph nodes one at a time): the per-kernel table (ncu_summary.py), so
#          graph - sum of kernels < 0 means kernels overlap, > 0 means gaps between them.
# Run from the repository root with the bundle in $B (see /work/shared/tools/device-bundle):
#   B=.gpu-gpu MODEL=1.5b SHAPES="16:512:1 256:4096:1" bash $B/run_profile.sh
# Writes the raw logs under $OUT; prints the three views.
set -uo pipefail
B=${B:-.gpu-gpu}
OUT=${OUT:-/tmp/longtail_profile_out}
MODEL=${MODEL:-1.5b}
SHAPES=${SHAPES:-16:512:1 16:4096:1 256:512:1 256:4096:1}
MODES=${MODES:-fast deterministic}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$B/lib:${LD_LIBRARY_PATH:-}
summary=${SUMMARY:-$B/ncu_summary.py}
list=$(echo $SHAPES | tr ' ' ',')
for mode in $MODES; do
  flag=""; [ "$mode" = deterministic ] && flag=--deterministic
  echo "=== wall $mode ==="
  timeout 120 "$B/bin/longtail_gpu_bench" --models "$MODEL" --profile "$list" --steps 20 $flag \
    > "$OUT/wall_$mode.log" 2>&1
  echo "exit $?"; grep -E "\] profile|rror" "$OUT/wall_$mode.log" | sed 's/^.*\] //'
  echo "=== graph GPU time $mode (3 steps per shape, in SHAPES order) ==="
  timeout 150 ncu --clock-control none --cache-control none --graph-profiling graph \
    --profile-from-start off --csv --page raw --metrics gpu__time_duration.sum \
    "$B/bin/longtail_gpu_bench" --models "$MODEL" --profile "$list" --steps 3 $flag \
    > "$OUT/graph_$mode.csv" 2> "$OUT/graph_$mode.err"
  echo "exit $?"
  python3 - "$OUT/graph_$mode.csv" <<'EOF'
import csv, io, sys
t = open(sys.argv[1], errors="replace").read()
i = t.find('"ID"')
rows = list(csv.reader(io.StringIO(t[i:]))) if i >= 0 else []
if not rows:
    print("no graph results"); print(t[-2000:]); sys.exit()
h = rows[0]; n = h.index("Kernel Name"); v = h.index("gpu__time_duration.sum")
print(" ".join(f"{r[n][:12]}={r[v]}" for r in rows[2:]), "(" + rows[1][v] + ")")
EOF
  for shape in $SHAPES; do
    tag=${mode}_${shape//:/_}
    echo "=== kernels $mode $MODEL $shape ==="
    timeout 150 ncu --clock-control none --cache-control none --profile-from-start off --csv \
      --page raw --metrics gpu__time_duration.sum "$B/bin/longtail_gpu_bench" --models "$MODEL" \
      --profile "$shape" --steps 1 $flag > "$OUT/kernels_$tag.csv" 2> "$OUT/kernels_$tag.err"
    echo "exit $?"
    python3 "$summary" "$OUT/kernels_$tag.csv" 1 | head -${TOP:-16}
  done
done
cd "$OUT" && tar czf logs.tgz *.log *.csv *.err && rm -f *.csv *.err
