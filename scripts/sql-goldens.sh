#!/usr/bin/env bash
# Regenerates the SQL goldens: runs tests/sql/cases/*.sql (or the cases named) on Apache Flink
# 2.3.0 with tests/sql/flink/SqlGolden.java and writes each case's .golden beside it. The Flink
# jars come from the PyPI wheel apache-flink-libraries, fetched and cached by
# ../shared/bench/flink/setup.sh (~330 MB once, under ~/.cache/flink-bench). Needs Java 17.
# CI does not run this: it compares sluice with the committed goldens.
#   scripts/sql-goldens.sh [CASE.sql...]
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP=${FLINK_SETUP:-../shared/bench/flink/setup.sh}
[ -f "$SETUP" ] || { echo "sql-goldens.sh: $SETUP not found (set FLINK_SETUP)" >&2; exit 1; }
bash "$SETUP" >&2
CACHE="${FLINK_BENCH_CACHE:-$HOME/.cache/flink-bench}"
LIB="$CACHE/lib"
CP="$LIB/flink-dist-2.3.0.jar:$LIB/flink-connector-files-2.3.0.jar"
CP="$CP:$LIB/log4j-api-2.25.3.jar:$LIB/log4j-core-2.25.3.jar:$LIB/log4j-slf4j-impl-2.25.3.jar:$LIB/log4j-1.2-api-2.25.3.jar"
CP="$CP:$LIB/flink-table-api-java-uber-2.3.0.jar:$LIB/flink-table-planner-loader-2.3.0.jar"
CP="$CP:$LIB/flink-table-runtime-2.3.0.jar:$LIB/flink-json-2.3.0.jar:$LIB/flink-cep-2.3.0.jar"
CLASSES="$(mktemp -d /tmp/sluice-sql-goldens.XXXXXX)"
trap 'rm -rf "$CLASSES"' EXIT
javac --release 17 -nowarn -encoding UTF-8 -cp "$CP" -d "$CLASSES" tests/sql/flink/SqlGolden.java
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=()
    for f in tests/sql/cases/*.sql; do cases+=("$(basename "$f")"); done
fi
# The module flags Flink's launch scripts pass on Java 17.
FLAGS="--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED \
--add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
--add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED \
--add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED"
# shellcheck disable=SC2086
java -Xmx1g $FLAGS -Dlog4j2.level=ERROR -Dlog4j.configurationFile=/dev/null -cp "$CLASSES:$CP" \
    SqlGolden tests/sql/cases tests/sql/data "${cases[@]}"
