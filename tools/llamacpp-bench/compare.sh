#!/usr/bin/env bash
# Interleaved same-machine comparison on the TinyLlama-1.1B shape: llama.cpp
# (prebuilt, see README.md; GGUFs tl-{q4_0,f16,iq3_m,q4_k_m,q8_0}.gguf in
# $LCPP_DIR) and squeeze bench on synthetic weights with its default
# kernels (int8 for palettized weights since session 7), 1 then 2 threads, each
# squeeze run right after the llama.cpp type it is compared with.
#   LCPP_DIR=/tmp/lcpp SQN=/tmp/sqn OUT=/tmp/pb ./compare.sh
# Results: $OUT/lcpp_TYPE_tT.json, $OUT/sqz_{37,f16,4,2}_tT.json,
# $OUT/llamabench_q4_0_tT.json (llama.cpp's own llama-bench, if built).
# Run it on a quiet machine: every figure is a median of 3 repetitions.
set -uo pipefail
LCPP_DIR=${LCPP_DIR:-/tmp/lcpp}
SQN=${SQN:-/tmp/sqn}
OUT=${OUT:-/tmp/pb}
LB=$LCPP_DIR/package/bins/linux-x64/llama-bench
mkdir -p "$OUT"
cd "$LCPP_DIR"
for T in 1 2; do
  for q in q4_0 f16 iq3_m q4_k_m q8_0; do
    ./lcpp-bench -m tl-$q.gguf -p 128 -n 32 -t $T -r 3 -o json > "$OUT/lcpp_${q}_t$T.json" 2> "$OUT/lcpp_${q}_t$T.err"
    args=""
    case $q in
      q4_0)   s=37;  args="--bpw 3.7" ;;
      f16)    s=f16; args="--bits 16" ;;
      iq3_m)  s=4;   args="--bits 4" ;;
      q4_k_m) s=2;   args="--bits 2" ;;
      *)      s="" ;;
    esac
    if [ -n "$s" ]; then
      "$SQN" bench --synthetic tinyllama-1.1b $args --threads $T --reps 3 --prompt-tokens 128 --gen-tokens 32 --json > "$OUT/sqz_${s}_t$T.json"
    fi
  done
  [ -x "$LB" ] && "$LB" -m tl-q4_0.gguf -p 128 -n 32 -t $T -r 3 -o json > "$OUT/llamabench_q4_0_t$T.json" 2>/dev/null
done
