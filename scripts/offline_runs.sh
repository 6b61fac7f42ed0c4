#!/usr/bin/env bash
# Reproduce the checked-in offline results (CPU, ../shared/data, offline models).
# Heads were detected on 32 Cranfield queries (BM25 top-20, documents cut to 250 words so prompts fit 8K tokens) (results/heads/<model>.json, seed 42); those
# queries are left out of every Cranfield row so that detection never sees evaluation queries.
set -euo pipefail
cd "$(dirname "$0")/.."
H="harness --no-progress"
SHARED=${HARNESS_SHARED_DATA:-../shared/data}
models=${MODELS:-"smollm2-135m qwen2.5-0.5b"}
step=${1:-all}

if [[ $step == all || $step == classic ]]; then
  for model in $models; do
    [[ -f results/heads/$model.json ]] || $H detect --model "$model" --task cranfield --n-queries 32 --depth 20 --truncate-words 250 \
      --objective ndcg --output "results/heads/$model.json"
    # Both models detect on the same 64 queries (same task, count and seed): one shared list.
    ids=results/heads/cranfield-detection-queries.txt
    python -c "import json,sys; print('\n'.join(json.load(open(sys.argv[1]))['query_ids']))" \
      "results/heads/$model.json" > "$ids.new"
    if [[ -f $ids ]] && ! cmp -s "$ids" "$ids.new"; then echo "detection queries differ" >&2; exit 1; fi
    mv "$ids.new" "$ids"
    excl="--exclude-queries $ids"
    # 64 of the remaining Cranfield queries for SmolLM2 and 32 for the 4x larger Qwen (seed 42; CPU
    # time; the 32 are the first 32 of the 64 draws), all 52 judged CACM topics.
    n=64; [[ $model == qwen2.5-0.5b ]] && n=32
    excl="$excl --max-queries $n"
    [[ -f results/cranfield/bm25__excl-cranfield-detection-queries__q$n-seed42.json ]] || $H run --task cranfield --retriever bm25 $excl
    [[ -f results/cranfield/dense__minilm__excl-cranfield-detection-queries__q$n-seed42.json ]] || $H run --task cranfield --retriever dense $excl
    for r in qr icr; do
      $H run --task cranfield --retriever $r --model "$model" --first-stage bm25 --depth 20 --truncate-words 250 $excl
      # CACM text is token-dense (numbers, codes): 150 words keep 20 documents under 8K tokens.
      $H run --task cacm --retriever $r --model "$model" --first-stage bm25 --depth 20 --truncate-words 150
    done
  done
fi

if [[ $step == all || $step == qa ]]; then
  HP=$SHARED/hotpotqa_dev_distractor_sample100_hfschema/hotpot_dev_distractor_v1.json
  CL=$SHARED/clipper_sample
  N="--max-queries 50"   # 50 of the 100 HotpotQA questions (seed 42): CPU time
  for r in qr icr; do
    $H run --task niah --retriever $r --model smollm2-135m
    $H run --task hotpotqa --data "$HP" --retriever $r --model smollm2-135m $N
  done
  $H run --task hotpotqa --data "$HP" --retriever bm25 $N
  $H run --task hotpotqa --data "$HP" --retriever dense $N
  # Books exceed SmolLM2's 8K context: each chapter keeps its first 300 words.
  $H run --task clipper --data "$CL" --retriever qr --model smollm2-135m --truncate-words 300
  $H run --task hotpotqa --data "$HP" --retriever rankgpt --model smollm2-135m $N
  for r in bm25 qr; do
    extra=""; [[ $r == qr ]] && extra="--model smollm2-135m"
    $H run --task hotpotqa --data "$HP" --retriever $r $extra $N --generate --generator hf:smollm2-135m --top-k 3
  done
  $H run --task hotpotqa --data "$HP" --retriever bm25 $N --generate --generator hf:smollm2-135m --full-context
  # NIAH answers from the full context with SmolLM2's QRHeads masked (paper Figure 1), and RankGPT.
  $H run --task niah --task-set 'lengths=[500,1000,2000]' --task-set 'depths=[0,50,100]' --retriever bm25 \
    --generate --generator hf:smollm2-135m --full-context \
    --generator-set mask_heads=results/heads/smollm2-135m.json --generator-set mask_top=16
  # ... and with 16 random heads masked instead (the control).
  $H run --task niah --task-set 'lengths=[500,1000,2000]' --task-set 'depths=[0,50,100]' --retriever bm25 \
    --generate --generator hf:smollm2-135m --full-context --generator-set mask_heads=random:16:0
  $H run --task niah --retriever rankgpt --model smollm2-135m
  # CLIPPER: 20 claim pairs (seed 42), chapters cut to 300 words so that a whole book fits 8K tokens;
  # answers from the top-3 chapters of bm25 and qr, and from every (cut) chapter.
  P="--max-queries 20 --truncate-words 300"
  G="--generate --generator hf:smollm2-135m --max-tokens 256"
  $H run --task clipper --data "$CL" --retriever bm25 $P $G --top-k 3
  $H run --task clipper --data "$CL" --retriever qr --model smollm2-135m $P $G --top-k 3
  $H run --task clipper --data "$CL" --retriever bm25 $P $G --full-context
  $H run --task clipper --data "$CL" --retriever icr --model smollm2-135m $P
  $H run --task clipper --data "$CL" --retriever rankgpt --model smollm2-135m $P
fi
if [[ $step == all || $step == heads ]]; then
  # Which heads (the paper's Table 3 protocol, on CPU): SmolLM2's QRHeads, its retrieval heads (RetHead,
  # detected on NIAH), 16 random heads and all heads, re-ranking BM25's top 10 of 32 held-out Cranfield
  # queries with the candidates shuffled (seed 42) so that position cannot help.
  [[ -f results/heads/smollm2-135m-retrieval-head.json ]] || $H detect --objective retrieval-head \
    --model smollm2-135m --task niah --task-set 'lengths=[1000,2000,3000]' --task-set 'depths=[0,25,50,75,100]' \
    --output results/heads/smollm2-135m-retrieval-head.json
  C="--task cranfield --exclude-queries results/heads/cranfield-detection-queries.txt --max-queries 32"
  C="$C --first-stage bm25 --depth 10 --truncate-words 150 --shuffle-candidates 42 --model smollm2-135m"
  # Detection source and stability (Tables 5, 6): QRscore detection on a second Cranfield set disjoint from
  # the first and from every evaluation query, on 32 HotpotQA questions and on the NIAH grid.
  HP=$SHARED/hotpotqa_dev_distractor_sample100_hfschema/hotpot_dev_distractor_v1.json
  [[ -f results/heads/smollm2-135m-cranfield-set2.json ]] || $H detect --model smollm2-135m --task cranfield \
    --n-queries 32 --depth 20 --truncate-words 250 --objective ndcg \
    --exclude-queries results/heads/cranfield-detection-and-evaluation-queries.txt --output results/heads/smollm2-135m-cranfield-set2.json
  [[ -f results/heads/smollm2-135m-hotpotqa.json ]] || $H detect --model smollm2-135m --task hotpotqa --data "$HP" \
    --n-queries 32 --objective ndcg --output results/heads/smollm2-135m-hotpotqa.json
  [[ -f results/heads/smollm2-135m-niah.json ]] || $H detect --model smollm2-135m --task niah --objective ndcg \
    --output results/heads/smollm2-135m-niah.json
  for heads in results/heads/smollm2-135m.json results/heads/smollm2-135m-retrieval-head.json random:16:0 full \
      results/heads/smollm2-135m-cranfield-set2.json results/heads/smollm2-135m-hotpotqa.json results/heads/smollm2-135m-niah.json \
      top:4:results/heads/smollm2-135m.json top:8:results/heads/smollm2-135m.json \
      top:32:results/heads/smollm2-135m.json top:64:results/heads/smollm2-135m.json; do
    $H run $C --retriever qr --heads "$heads"
  done
  bash scripts/analyses.sh   # results/ANALYSES.md
fi
if [[ $step == all || $step == fusion ]]; then
  for t in cranfield cacm; do $H fuse results/$t/bm25.json results/$t/dense__minilm.json; done
  $H fuse results/cranfield/bm25.json results/cranfield/dense__minilm.json --method wsum
  $H fuse results/hotpotqa/bm25__q50-seed42.json results/hotpotqa/qr__smollm2-135m__file_smollm2-135m__q50-seed42.json
fi
$H leaderboard
