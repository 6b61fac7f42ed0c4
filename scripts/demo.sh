#!/usr/bin/env bash
# `make demo`: about 3 minutes on 2 CPU cores shared with other jobs for a first run (converting
# SmolLM2 once included), about a minute for a rerun (runs and answers come from the cache under
# ~/.cache/harness); no network, no GPU. Measured: results/bench/demo-cpu.md.
#
#  1    Cranfield (aeronautics abstracts with graded judgements, packaged with the harness): BM25
#       on N queries; the 32 queries the shipped heads were detected on are left out.
#  2    The same top K of BM25, every document cut to W words, re-ranked three ways: dense
#       (all-MiniLM-L6-v2), QR (the 16 QRHeads of SmolLM2-135M, results/heads/smollm2-135m.json)
#       and ICR (all 270 heads of SmolLM2-135M).
#  3    Needle in a haystack (the paper's Figure 1): SmolLM2 answers from the full context with
#       its 16 QRHeads silenced, and with 16 random heads silenced.
#  4    Heat maps and the leaderboard of demo-results/ (tables, significance vs BM25, web page).
#
# Sizes (environment): DEMO_QUERIES (N, default 8), DEMO_DEPTH (K, default 10), DEMO_WORDS (W,
# default 60), DEMO_RESULTS (default demo-results; emptied first).
#
# Two processes run side by side in steps 2 and 3, one torch thread each (OMP_NUM_THREADS=1
# unless set): the one in front shows its progress bar, the other writes a log under
# demo-results/logs/. On a 2-core machine shared with other jobs, one process with two threads
# was over 2x slower than with one (threads waiting on each other at every small operation).
set -euo pipefail
cd "$(dirname "$0")/.."

H=${HARNESS:-.venv/bin/harness}
OUT=${DEMO_RESULTS:-demo-results}
N=${DEMO_QUERIES:-8}
K=${DEMO_DEPTH:-10}
W=${DEMO_WORDS:-60}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Results are normally written only from committed code; the demo also runs in a modified
# checkout (each result records allow_dirty).
export HARNESS_ALLOW_DIRTY=1

CRAN=(--task cranfield --max-queries "$N" --exclude-queries results/heads/cranfield-detection-queries.txt
      --results-root "$OUT")
RERANK=(--first-stage bm25 --depth "$K" --truncate-words "$W")
NIAH=(--task niah --task-set 'lengths=[250,500]' --task-set 'depths=[0,100]' --retriever bm25
      --generate --generator hf:smollm2-135m --full-context --max-tokens 32 --generator-set batch_size=1)
QRHEADS=(--generator-set mask_heads=results/heads/smollm2-135m.json --generator-set mask_top=16)
RANDOM16=(--generator-set mask_heads=random:16:0)

# Start from an empty folder, so that the leaderboard shows this demo's runs only; never empty a
# folder that an earlier demo did not write (timings.tsv marks one).
if [[ -d $OUT && -n $(ls -A "$OUT") && ! -f $OUT/timings.tsv ]]; then
  echo "$OUT is not empty and was not written by the demo; choose another DEMO_RESULTS" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT/logs"
TIMES=$OUT/timings.tsv
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# CPU seconds (user + system) of every child process waited for so far (`times` must run in this
# shell, not in a subshell, to see them).
snap() { times > "$OUT/logs/.times"; }
cpu_at_snap() {
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$OUT/logs/.times"
}
t0=$EPOCHREALTIME
printf 'step\twall_s\tcpu_s\n' > "$TIMES"
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
show_behind() { printf '$ %s &   # in the background\n' "$*"; }

# step NAME TITLE: start a step; done_step records its wall time and CPU time under NAME.
step() { bold "$2"; step_name=$1; step_start=$EPOCHREALTIME; snap; step_cpu=$(cpu_at_snap); }
done_step() {
  local secs cpu; secs=$(elapsed "$step_start"); snap
  cpu=$(awk -v a="$step_cpu" -v b="$(cpu_at_snap)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\n' "$step_name" "$secs" "$cpu" >> "$TIMES"
  printf '(%s s; %s CPU-seconds)\n' "$secs" "$cpu"
}

# behind NAME CMD...: run CMD (a shell function or command) in the background, no progress bars,
# output in $OUT/logs/NAME.log; finish NAME waits for it and prints its result lines.
declare -A PIDS
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed step leaves nothing running
behind() {
  local name=$1; shift
  ( export DISABLE_TQDM=1 TQDM_DISABLE=1; "$@" ) > "$OUT/logs/$name.log" 2>&1 &
  PIDS[$name]=$!
}
finish() {
  local name=$1
  if ! wait "${PIDS[$name]}"; then
    echo "$name failed; the end of $OUT/logs/$name.log:" >&2
    tail -n 20 "$OUT/logs/$name.log" >&2
    exit 1
  fi
  grep -E '^(cranfield|niah) ' "$OUT/logs/$name.log" | sed "s/^/[$name] /"
}

step bm25 "[1/4] BM25 on $N Cranfield queries: the baseline and the first stage"
show $H run "${CRAN[@]}" --retriever bm25
$H run "${CRAN[@]}" --retriever bm25
done_step

step rerank "[2/4] Re-rank BM25's top $K, each cut to $W words: dense then QR in the background (log: $OUT/logs/dense-qr.log), ICR here"
dense_then_qr() {
  $H run "${CRAN[@]}" --retriever dense --model minilm "${RERANK[@]}"
  $H run "${CRAN[@]}" --retriever qr --model smollm2-135m "${RERANK[@]}"
}
show_behind $H run "${CRAN[@]}" --retriever dense --model minilm "${RERANK[@]}" "&&" \
  $H run "${CRAN[@]}" --retriever qr --model smollm2-135m "${RERANK[@]}"
behind dense-qr dense_then_qr
show $H run "${CRAN[@]}" --retriever icr --model smollm2-135m "${RERANK[@]}"
$H run "${CRAN[@]}" --retriever icr --model smollm2-135m "${RERANK[@]}"
finish dense-qr
done_step

step niah "[3/4] Needle in a haystack of 250 and 500 words, needle first or last; SmolLM2 answers from it all with 16 heads silenced: its QRHeads in the background (log: $OUT/logs/qrheads.log), random ones here"
show_behind $H run "${NIAH[@]}" "${QRHEADS[@]}" --output "$OUT/niah/masked-qrheads16.json"
behind qrheads $H run "${NIAH[@]}" "${QRHEADS[@]}" --output "$OUT/niah/masked-qrheads16.json"
show $H run "${NIAH[@]}" "${RANDOM16[@]}" --output "$OUT/niah/masked-random16.json"
$H run "${NIAH[@]}" "${RANDOM16[@]}" --output "$OUT/niah/masked-random16.json"
finish qrheads
done_step

step leaderboard "[4/4] Heat maps and the leaderboard of $OUT/"
for name in masked-qrheads16 masked-random16; do
  show $H plot niah "$OUT/niah/$name.json"
  $H plot niah "$OUT/niah/$name.json" > /dev/null
done
show $H leaderboard --results "$OUT" --print
$H leaderboard --results "$OUT" --print
done_step

total=$(elapsed "$t0")
snap
printf 'total\t%s\t%s\n' "$total" "$(cpu_at_snap)" >> "$TIMES"
cat <<EOF

Done in $total s (the time of each step: $TIMES).
What to look at:
  - Cranfield: dense, QR and ICR re-rank the same $K BM25 candidates, so their recall cannot beat
    BM25's at $K (the "First stage (ceiling)" column); the gaps in nDCG@10 are what the scorers add.
    $N queries are a sample: a gap is marked ▲/▼ only when it is significant.
  - NIAH: ROUGE-1-R of the answers (R@1 is BM25's retrieval, unused with --full-context). Silencing
    SmolLM2's 16 QRHeads stops it copying the needle from its context; 16 random heads do not.
  - The web page: $OUT/site/index.html (sortable tables, per-query drill-down, heat maps)
  - The heat maps: $OUT/niah/masked-qrheads16.png, $OUT/niah/masked-random16.png
  - More queries: DEMO_QUERIES=32 make demo. The checked-in runs: results/LEADERBOARD.md.
EOF
