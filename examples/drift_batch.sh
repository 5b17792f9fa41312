#!/bin/sh
# drift_batch.sh — a batch of tumour measurements for the drift tour (README.md): scikit-learn's
# breast_cancer.csv with each of the 30 features shifted by SHIFT of its standard deviation
# (0.5 by default; 0 copies the data). The first line and the diagnosis column stay as they are.
#
#   sh examples/drift_batch.sh 0.5 > /tmp/drifted.csv
#   weir trigger cancer-monitor -p current=/tmp/drifted.csv
set -eu
SHIFT=${1:-0.5}
CSV=${2:-/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv}
[ -r "$CSV" ] || { echo "drift_batch.sh: $CSV: not readable (apt-get install python3-sklearn)" >&2; exit 1; }
# two passes over the file: the standard deviations, then the shifted rows
awk -F, -v OFS=, -v CONVFMT=%.10g -v k="$SHIFT" '
  FNR == 1 { if (NR > 1) print; next }
  NR == FNR { n++; for (i = 1; i <= 30; i++) { s[i] += $i; q[i] += $i * $i } next }
  FNR == 2 { for (i = 1; i <= 30; i++) d[i] = k * sqrt(q[i] / n - (s[i] / n) ^ 2) }
  { for (i = 1; i <= 30; i++) $i += d[i]; print }' "$CSV" "$CSV"
