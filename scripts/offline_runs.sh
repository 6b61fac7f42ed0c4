#!/usr/bin/env bash
# Regenerate the checked-in offline results (CPU, ../shared/data, the offline models):
#   heads     the head files the recipes read (detected only where missing)
#   runs      every `offline` recipe of reproduce/paper.yaml: one command per result file, in the order
#             their inputs need (fused rows last), then checked against the recipes' expected values
#   analyses  results/ANALYSES.md (scripts/analyses.sh)
# and the leaderboard. `scripts/offline_runs.sh runs` re-runs only the results; for a few of them:
# harness reproduce --table offline --condition 'offline-fusion-*'.
#
# Heads are detected on 32 Cranfield queries (BM25 top-20, documents cut to 250 words so prompts fit 8K
# tokens; results/heads/<model>.json, seed 42); those queries are left out of every Cranfield row, so
# detection never sees an evaluation query.
set -euo pipefail
cd "$(dirname "$0")/.."
H="harness --no-progress"
SHARED=${HARNESS_SHARED_DATA:-../shared/data}
models=${MODELS:-"smollm2-135m qwen2.5-0.5b"}
step=${1:-all}

if [[ $step == all || $step == heads ]]; then
  for model in $models; do
    [[ -f results/heads/$model.json ]] || $H detect --model "$model" --task cranfield --n-queries 32 --depth 20 --truncate-words 250 \
      --objective ndcg --output "results/heads/$model.json"
    # qr's default heads ship inside the package as a byte-identical copy (tests/retrievers/test_shipped_heads.py)
    if [[ -f harness/data/heads/$model.json ]]; then cp "results/heads/$model.json" "harness/data/heads/$model.json"; fi
    # Both models detect on the same queries (same task, count and seed): one shared list.
    ids=results/heads/cranfield-detection-queries.txt
    python -c "import json,sys; print('\n'.join(json.load(open(sys.argv[1]))['query_ids']))" \
      "results/heads/$model.json" > "$ids.new"
    if [[ -f $ids ]] && ! cmp -s "$ids" "$ids.new"; then echo "detection queries differ" >&2; exit 1; fi
    mv "$ids.new" "$ids"
  done
  # Which heads (the paper's Table 3 protocol): SmolLM2's retrieval heads (RetHead, detected on NIAH) and
  # QRscore detection on a second Cranfield set disjoint from the first and from every evaluation query,
  # on 32 HotpotQA questions and on the NIAH grid (detection source and stability, Tables 5 and 6).
  [[ -f results/heads/smollm2-135m-retrieval-head.json ]] || $H detect --objective retrieval-head \
    --model smollm2-135m --task niah --task-set 'lengths=[1000,2000,3000]' --task-set 'depths=[0,25,50,75,100]' \
    --output results/heads/smollm2-135m-retrieval-head.json
  HP=$SHARED/hotpotqa_dev_distractor_sample100_hfschema/hotpot_dev_distractor_v1.json
  [[ -f results/heads/smollm2-135m-cranfield-set2.json ]] || $H detect --model smollm2-135m --task cranfield \
    --n-queries 32 --depth 20 --truncate-words 250 --objective ndcg \
    --exclude-queries results/heads/cranfield-detection-and-evaluation-queries.txt --output results/heads/smollm2-135m-cranfield-set2.json
  [[ -f results/heads/smollm2-135m-hotpotqa.json ]] || $H detect --model smollm2-135m --task hotpotqa --data "$HP" \
    --n-queries 32 --objective ndcg --output results/heads/smollm2-135m-hotpotqa.json
  [[ -f results/heads/smollm2-135m-niah.json ]] || $H detect --model smollm2-135m --task niah --objective ndcg \
    --output results/heads/smollm2-135m-niah.json
fi
if [[ $step == all || $step == runs ]]; then
  $H reproduce --table offline
fi
if [[ $step == all || $step == analyses ]]; then
  bash scripts/analyses.sh   # results/ANALYSES.md
fi
$H leaderboard
