#!/bin/sh
# Uploads the orders example's operators to a sluice server and submits
# compose/orders-kafka.yaml to it, unless a job of that name is
# already running there: docker-compose.yml runs this once per
# `docker compose up`, and a second `up` must not start a second copy. A job
# submitted again after the server restarted resumes from its checkpoints.
# Takes the server from SLUICE_SERVER and its token from SLUICE_TOKEN, the
# modules from SLUICE_MODULE_PATH, and the spec's ${VAR}s from the
# environment (BOOTSTRAP, CHECKPOINT_DIR, PARALLELISM, ...).
#   sh compose/submit-job.sh [SPEC]
set -eu
spec=${1:-$(dirname "$0")/orders-kafka.yaml}
job=orders-kafka
modules=${SLUICE_MODULE_PATH:-.}
modules=${modules%%:*}

for module in usd_orders.wasm count_sum.wasm; do
    # Uploading the same module under the same name again changes nothing.
    sluice module upload "$modules/$module"
done
if sluice job list | awk -v job="$job" '$2 == job && $3 == "running" { found = 1 } END { exit !found }'; then
    echo "submit-job: job \`$job\` is already running on ${SLUICE_SERVER:-the server}; not submitting it again"
    sluice job list
    exit 0
fi
sluice job submit "$spec"
sluice job list
