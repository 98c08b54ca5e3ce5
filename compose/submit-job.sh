#!/bin/sh
# Uploads the examples' operators to a sluice server and submits the jobs
# docker-compose.yml runs — compose/orders-kafka.yaml (Kafka to Kafka) and
# examples/revenue-postgres/kafka.yaml (Kafka to PostgreSQL) — each unless a
# job of its name is already running there: docker-compose.yml runs this
# once per `docker compose up`, and a second `up` must not start a second
# copy. A job submitted again after the server restarted resumes from its
# checkpoints (CHECKPOINTS/<job name>).
# Takes the server from SLUICE_SERVER and its token from SLUICE_TOKEN, the
# modules from SLUICE_MODULE_PATH, the checkpoints' folder on the server from
# CHECKPOINTS, and the specs' other ${VAR}s from the environment (BOOTSTRAP,
# PG_URL, PARALLELISM, ...).
#   sh compose/submit-job.sh [SPEC...]
set -eu
here=$(dirname "$0")
[ $# -gt 0 ] || set -- "$here/orders-kafka.yaml" "$here/../examples/revenue-postgres/kafka.yaml"
modules=${SLUICE_MODULE_PATH:-.}
modules=${modules%%:*}

for module in usd_orders.wasm count_sum.wasm; do
    # Uploading the same module under the same name again changes nothing.
    sluice module upload "$modules/$module"
done
for spec in "$@"; do
    job=$(sed -n 's/^name: *//p' "$spec" | head -n 1)
    if sluice job list | awk -v job="$job" '$2 == job && $3 == "running" { found = 1 } END { exit !found }'; then
        echo "submit-job: job \`$job\` is already running on ${SLUICE_SERVER:-the server}; not submitting it again"
        continue
    fi
    CHECKPOINT_DIR="${CHECKPOINTS:-/var/lib/sluice/checkpoints}/$job" sluice job submit "$spec"
done
sluice job list
