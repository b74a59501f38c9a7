#!/bin/bash
# usage: eval-rows.sh single|ensemble|members  (run from the worktree)
D=/work/shared/data/bus-bra; T=/tmp/ablation-runs/test.txt; R=/tmp/ablation-runs/cv-e4; E=/tmp/ablation-runs/eval
run() { name=$1; shift; [ -f $E/$name.json ] && return; s=$(date +%s); echo "$(date -u +%T) start $name: evaluate $*" >> $E/timing.log
  nice -n 19 npx tsx src/cli/main.ts evaluate --data $D --val-list $T --json $E/$name.json "$@" > $E/$name.log 2>&1; rc=$?
  echo "$(date -u +%T) done $name rc=$rc $(( $(date +%s) - s ))s load $(cut -d' ' -f1-3 /proc/loadavg)" >> $E/timing.log; }
ck=$R/fold-1/best.safetensors
case $1 in
single)
  run f1-none --checkpoint $ck
  run f1-flips --checkpoint $ck --tta flips
  run f1-lcc --checkpoint $ck --post lcc
  run f1-flips-lcc --checkpoint $ck --tta flips --post lcc
  run f1-d4 --checkpoint $ck --tta d4
  run f1-d4-lcc --checkpoint $ck --tta d4 --post lcc ;;
ensemble)
  all="--checkpoint $R/fold-1/best.safetensors --checkpoint $R/fold-2/best.safetensors --checkpoint $R/fold-3/best.safetensors --checkpoint $R/fold-4/best.safetensors --checkpoint $R/fold-5/best.safetensors"
  run ens-none $all
  run ens-flips-lcc $all --tta flips --post lcc ;;
member[2-5])
  k=${1#member}; run f$k-none --checkpoint $R/fold-$k/best.safetensors ;;
members)
  for k in 2 3 4 5; do run f$k-none --checkpoint $R/fold-$k/best.safetensors; done ;;
esac
