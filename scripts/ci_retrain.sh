#!/usr/bin/env bash
# The daily job, as a CI cron runs it: bring in the newest prices (import the first time, then `data update`:
# new days appended, restated symbols rewritten), retrain, keep the JSON summary, and write tomorrow's ranked
# list from the champion.
#
#   scripts/ci_retrain.sh PRICES_DIR [OVERRIDES...]
#
# Environment:
#   MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN:
#       the team's tracking server and registry (from CI secrets; never written to a file)
#   QTRACK_DATASET      dataset name (default: prices)
#   QTRACK_MARKET_FILE  optional symbols or constituents file for a market named `universe`
#   QTRACK_SUMMARY      where the JSON summary goes (default: retrain-summary.json)
#   QTRACK_TOMORROW     where tomorrow's ranked list goes (default: tomorrow.csv)
#   QTRACK              the qtrack executable (default: .venv/bin/qtrack, built by `make .venv/.installed`)
# Exit codes are qtrack retrain's: 0 done (promoted, kept or no new data), 2 bad config or data,
# 3 tracking server or registry unreachable, 4 another retrain of the same model is running.
set -euo pipefail

prices="${1:?usage: scripts/ci_retrain.sh PRICES_DIR [OVERRIDES...]}"
shift
dataset="${QTRACK_DATASET:-prices}"
summary="${QTRACK_SUMMARY:-retrain-summary.json}"

qtrack="${QTRACK:-$(dirname "$0")/../.venv/bin/qtrack}"
market=()
if [[ -n "${QTRACK_MARKET_FILE:-}" ]]; then
  market=(--market "universe=${QTRACK_MARKET_FILE}")
fi
if "$qtrack" data info "$dataset" >/dev/null 2>&1; then
  "$qtrack" data update "$prices" --name "$dataset"
else
  "$qtrack" data import "$prices" --name "$dataset" "${market[@]}"
fi
"$qtrack" retrain "dataset.name=${dataset}" "retrain.summary=${summary}" "$@"
model="$(sed -n 's/^ *"model": "\(.*\)",\{0,1\}$/\1/p' "$summary" | head -n 1)"
"$qtrack" predict --model "${model}@champion" --latest --output "${QTRACK_TOMORROW:-tomorrow.csv}"
