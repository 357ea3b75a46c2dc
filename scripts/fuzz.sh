#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with libFuzzer's coverage instrumentation, on the stable
# toolchain (no nightly, no cargo-fuzz: the flags cargo-fuzz would pass, without a
# sanitizer), and runs each for FUZZ_SECONDS. Fails, naming the reproducer, if an input
# crashes a target (a panic included), runs longer than 10 s or takes more than 1 GiB.
#
#   scripts/fuzz.sh [TARGET...]      default: every fuzz/fuzz_targets/*.rs
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 20)
#   FUZZ_JOBS        targets run at once (default: the number of cores)
#   FUZZ_TARGET_DIR  build directory (default fuzz/target)
#   FUZZ_SCRATCH     where the extraction targets make their sandboxes (default: a directory
#                    in /dev/shm when that is writable, else in FUZZ_TARGET_DIR; on a
#                    disk, removing each input's files makes fuzzing 10 to 50 times slower)
#   FUZZ_REQUIRED=1  fail, instead of skipping, when a prerequisite is missing
#
# Inputs that reached new code are kept in fuzz/corpus/<target> for the next run; crashes
# go to fuzz/artifacts/<target>/. Each target's output is in FUZZ_TARGET_DIR/logs.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
work=${FUZZ_TARGET_DIR:-fuzz/target}
mkdir -p "$work"
work=$(cd "$work" && pwd)

banner() {
    echo ""
    echo "*******************************************************************************"
    while IFS= read -r line; do printf '*** %s\n' "$line"; done
    echo "*******************************************************************************"
}

# libFuzzer is C++, compiled by the libfuzzer-sys crate.
cxx=${CXX:-c++}
if ! command -v "$cxx" >/dev/null 2>&1; then
    banner <<EOF
revive: fuzzing SKIPPED: no C++ compiler ($cxx) to build libFuzzer with.
Install one (Debian/Ubuntu: apt-get install g++, which 'make host-deps' does as
root) or name it in CXX, then run 'make fuzz'.
EOF
    [ "${FUZZ_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do
        t=$(basename "$f" .rs)
        targets+=("$t")
    done
fi

host=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags="$flags -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags="$flags -Cllvm-args=-sanitizer-coverage-pc-table"
flags="$flags -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
echo "==> building ${#targets[@]} fuzz targets (release, coverage-instrumented) into $work"
started=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# --target keeps the instrumentation out of build scripts and proc macros. Not --locked:
# fuzz/Cargo.lock takes in a dependency the parsers' crates gain (commit it then).
if ! env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS="$flags" CARGO_TARGET_DIR="$work" \
    cargo build --manifest-path fuzz/Cargo.toml --release --target "$host" "${bins[@]}"; then
    echo "revive: the fuzz targets did not build" >&2
    exit 1
fi
echo "==> built in $(($(date +%s) - started)) s"

scripts/fuzz-seeds.sh "$work/seeds" || exit 1
mkdir -p "$work/logs"
if [ -n "${FUZZ_SCRATCH:-}" ]; then
    mkdir -p "$FUZZ_SCRATCH"
    scratch_root=$(mktemp -d "$FUZZ_SCRATCH/revive-fuzz.XXXXXX")
elif [ -d /dev/shm ] && [ -w /dev/shm ]; then
    scratch_root=$(mktemp -d /dev/shm/revive-fuzz.XXXXXX)
else
    mkdir -p "$work/scratch"
    scratch_root=$(mktemp -d "$work/scratch/revive-fuzz.XXXXXX")
fi
# Not before the fuzzers are done, whatever ends this script: they work in it.
trap 'wait; chmod -R u+rwx "$scratch_root" 2>/dev/null; rm -rf "$scratch_root"' EXIT

# run TARGET: fuzzes one target; its exit code goes to logs/TARGET.rc.
run() {
    local t=$1
    local bin="$work/$host/release/$t"
    local corpus="fuzz/corpus/$t" artifacts="fuzz/artifacts/$t" scratch="$scratch_root/$t"
    local dirs=("$corpus")
    [ -d "$work/seeds/$t" ] && dirs+=("$work/seeds/$t")
    mkdir -p "$corpus" "$artifacts"
    rm -rf "$scratch" && mkdir -p "$scratch"
    touch "$work/logs/$t.start"
    # The sandboxes of the extraction targets go to TMPDIR, removed afterwards (opened up
    # first: an input may leave a directory without permissions behind when it crashes).
    TMPDIR="$scratch" RUST_BACKTRACE=1 "$bin" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "${dirs[@]}" >"$work/logs/$t.log" 2>&1
    echo $? >"$work/logs/$t.rc"
    chmod -R u+rwx "$scratch" 2>/dev/null
    rm -rf "$scratch"
}

echo "==> fuzzing each target for $seconds s, $jobs at a time"
started=$(date +%s)
running=0
for t in "${targets[@]}"; do
    rm -f "$work/logs/$t.rc"
    run "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

# new_artifacts TARGET: the reproducers libFuzzer wrote for TARGET in this run.
new_artifacts() {
    find "fuzz/artifacts/$1" -type f -newer "$work/logs/$1.start" \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null
}

failed=()
for t in "${targets[@]}"; do
    log="$work/logs/$t.log"
    rc=$(cat "$work/logs/$t.rc" 2>/dev/null || echo "?")
    found=$(new_artifacts "$t")
    if [ "$rc" != 0 ] || [ -n "$found" ]; then
        failed+=("$t")
        echo "    $t: FAILED"
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    corp=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -n1)
    echo "    $t: ok, ${runs:-?} inputs (${rate:-?}/s), ${cov:-cov: ?}, ${corp:-corp: ?}"
done
for t in "${failed[@]}"; do
    log="$work/logs/$t.log"
    rc=$(cat "$work/logs/$t.rc" 2>/dev/null || echo "?")
    found=$(new_artifacts "$t")
    echo ""
    echo "---- $t: the last lines of $log"
    tail -n 40 "$log"
    {
        echo "revive: fuzz target $t FAILED (libFuzzer exit code $rc)."
        if [ -n "$found" ]; then
            for a in $found; do
                echo "reproducer: $a"
                echo "  replay:   $work/$host/release/$t $a"
                echo "  as input: RUST_LIBFUZZER_DEBUG_PATH=/dev/stdout $work/$host/release/$t $a"
            done
        else
            echo "no reproducer was written; the whole output is in $log"
        fi
    } | banner
done
echo "==> fuzzed ${#targets[@]} targets in $(($(date +%s) - started)) s"
[ ${#failed[@]} -eq 0 ] || exit 1
