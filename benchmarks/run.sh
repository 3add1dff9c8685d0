#!/usr/bin/env bash
# Online benchmark for cloud machines with internet access: fetches real models of each family
# (PyTorch Hub hustvl/YOLOP by git, ONNX roberta-base-11 and the TF Hub bertseq2seq SavedModel over HTTPS,
# Hugging Face bert-base-uncased and tiiuae/falcon-7b with huggingface_hub), then signs and verifies each
# keyless on the public-good Sigstore instance with this project and with model-signing 1.1.1, and writes
# the table, CSV/JSON and plot (see benchmarks/harness/report.py).
#
#   benchmarks/run.sh IDENTITY_PROVIDER IDENTITY [cleanup]
#
#   IDENTITY_PROVIDER  OIDC issuer URL verification expects, e.g. https://accounts.google.com
#   IDENTITY           signer identity verification expects, e.g. you@example.com
#   cleanup            delete each model after its run (bounds disk use to the largest model, ~27 GB)
#
# Identity tokens for signing, first that applies: $BENCH_TOKEN_COMMAND (run before every signing, prints a
# fresh token, e.g. a cloud metadata query for audience "sigstore"), $SIGSTORE_IDENTITY_TOKEN, or the
# tools' own ambient CI credential detection (GitHub Actions, GitLab, GCP, ...).
# Environment: BENCH_DATA (models; default ~/modelseal-bench-data), BENCH_OUT (reports; default
# out/bench-online-<hostname>), REPEATS (default 1).
set -euo pipefail

usage() {
    echo "usage: $0 IDENTITY_PROVIDER IDENTITY [cleanup]" >&2
    exit 1
}
[[ $# -ge 2 && $# -le 3 ]] || usage
extra=()
if [[ $# -eq 3 ]]; then
    [[ $3 == cleanup ]] || usage
    extra+=(--cleanup)
fi

cd "$(dirname "$0")/.."
make --no-print-directory venv >/dev/null  # the project's venv, with the harness pins
out=${BENCH_OUT:-out/bench-online-$(hostname)}
exec .venv/bin/python -m benchmarks.harness --online \
    --identity-provider "$1" --identity "$2" ${extra[@]+"${extra[@]}"} \
    --data-dir "${BENCH_DATA:-$HOME/modelseal-bench-data}" --out "$out" --repeats "${REPEATS:-1}"
