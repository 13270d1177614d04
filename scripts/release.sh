#!/usr/bin/env bash
# Orchestrate a model release (seed): validation -> promote shadow -> enable canary
# -> monitor -> promote to full rollout, by writing a ModelRelease document and
# running it with the local release engine. The same document can be applied to a
# cluster instead: `kubectl apply -f <the printed file>`.
#
#   scripts/release.sh --shadow-id MODEL_ID [--disable-rollout] [--skip-validations]
#                      [--name NAME] [--template FILE] [--state-dir DIR] [--config FILE]
#                      [-- extra `tidegate release run` options, e.g. --nats-url, --metrics-port]
#
#   --disable-rollout   stop after validation with rollout disabled (mode=disabled)
#   --skip-validations  rerun within the same release without the checklist
#                       (same --shadow-id/--name: the driver resumes that release)
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

MODEL_ID="" NAME="" TEMPLATE="examples/release.yaml" STATE_DIR=".tidegate/releases" CONFIG="config/app.yml"
FLAGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shadow-id) MODEL_ID="${2:?--shadow-id needs a MODEL_ID}"; shift 2 ;;
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --template) TEMPLATE="${2:?}"; shift 2 ;;
    --state-dir) STATE_DIR="${2:?}"; shift 2 ;;
    --config) CONFIG="${2:?}"; shift 2 ;;
    --disable-rollout) FLAGS+=(--disable-rollout); shift ;;
    --skip-validations) FLAGS+=(--skip-validations); shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "release.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
[[ -n "$MODEL_ID" ]] || { echo "release.sh: --shadow-id MODEL_ID is required" >&2; usage 2; }

if [[ -n "${TIDEGATE:-}" ]]; then read -r -a TG <<<"$TIDEGATE"
elif command -v tidegate >/dev/null 2>&1; then TG=(tidegate)
else TG=("$(dirname "$0")/../.venv/bin/tidegate"); fi

NEW_ARGS=(--model-id "$MODEL_ID" --template "$TEMPLATE")
[[ -n "$NAME" ]] && NEW_ARGS+=(--name "$NAME")
DOC="$("${TG[@]}" release new "${NEW_ARGS[@]}" ${FLAGS[@]+"${FLAGS[@]}"})"
NAME="$(printf '%s\n' "$DOC" | awk '/^metadata:/{m=1;next} m && /^  name:/{print $2; exit}')"
mkdir -p "$STATE_DIR"
FILE="$STATE_DIR/$NAME.release.yaml"
printf '%s\n' "$DOC" > "$FILE"
echo "release.sh: $NAME ($MODEL_ID) -> $FILE" >&2
exec "${TG[@]}" release run "$FILE" --state-dir "$STATE_DIR" --config "$CONFIG" ${FLAGS[@]+"${FLAGS[@]}"} "$@"
