#!/bin/sh
# Exports the seed's PyTorch models and checks libpose's outputs against PyTorch's, for files
# with and without libpose metadata. Used by the example_torch_parity test; also handy by hand:
#
#   sh ../examples/check_parity.sh /usr/bin/python3 ./examples/load_and_run seed_models
#
# Exits 0 when every comparison passes, or when PyTorch is missing (the export says so).
set -eu
if [ $# -ne 3 ]; then
  echo "usage: check_parity.sh PYTHON3 LOAD_AND_RUN OUT_DIR" >&2
  exit 2
fi
python=$1
load_and_run=$2
out=$3
here=$(dirname "$0")

# A stale reference from an earlier run must not stand in for this one.
rm -f "$out/summarizer.expected.f32" "$out/classifier.expected.f32"

"$python" "$here/export_seed_models.py" "$out"
if [ ! -f "$out/summarizer.expected.f32" ]; then
  exit 0 # no PyTorch: nothing to compare against
fi
for m in summarizer classifier; do
  # The metadata file says everything; the plain state_dict file needs the skip factor.
  "$load_and_run" "$out/${m}_meta.safetensors" --expect "$out/$m.expected.f32"
  "$load_and_run" "$out/$m.safetensors" --skip 2 --expect "$out/$m.expected.f32"
done
echo "check_parity: all four comparisons passed"
