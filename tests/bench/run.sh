#!/usr/bin/env bash
# Performance bench of issue 6: hokrajai side by side with mpd, mpg123, ffmpeg and sqlite3.
#
#   bash tests/bench/run.sh                 # every figure (about 10 min; 16 the first time, when
#                                           # the 1,000,000-row airtime database is built and cached)
#   bash tests/bench/run.sh decode ingest   # only some: decode ingest upload startup airtime play
#   PERF_PLAY_SECS=600 bash tests/bench/run.sh play   # play the whole 10-minute MP3 (default: 2 min)
#
# Builds the release binary, installs the Debian peers when missing (the bench does that too),
# says how busy the machine is (numbers taken on a loaded machine are noisy), runs
# `cargo bench --bench perf`, and keeps the report in target/perf-bench/report-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
for p in ffmpeg mpd mpg123 sqlite3 wrk; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null; } ||
        echo "some peers could not be installed; their columns will say n/a" >&2
fi

cargo build --release
cargo bench --bench perf --no-run

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo)" >&2
echo "load before the run: $(uptime)" >&2
if awk -v n="$(nproc)" '{exit !($1 > n / 2)}' /proc/loadavg; then
    echo "warning: the machine is busy (load above half the cores); wall-time figures will be noisy" >&2
fi

mkdir -p target/perf-bench
report="target/perf-bench/report-$(date -u +%Y%m%dT%H%M%SZ).md"
cargo bench --bench perf -- "$@" | tee "$report"
echo "load after the run: $(uptime)" >&2
echo "report kept in $report" >&2
