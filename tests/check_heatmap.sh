#!/bin/sh
# Runs examples/attention_heatmap into a temporary directory and validates both PNGs with
# png_check: seq_len 64 at 4 pixels per cell gives 256 x 256 images.
#   check_heatmap.sh ATTENTION_HEATMAP PNG_CHECK
set -eu
heatmap=$1
png_check=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$heatmap" "$dir" 64
for name in attention_strided.png attention_full.png; do
  "$png_check" "$dir/$name" 256 256
done
