#!/usr/bin/env bash
# compare-backup.sh: wall time and peak memory of `drp backup create`, compared in one run with
#
#   pipeline:  tar -cf - DIR | zstd -3 -T0 | gpg --encrypt -z 0 -r KEY > FILE
#   restic:    restic backup DIR          (into a fresh repository each round: a full backup)
#
# Scenario 1 backs up a real directory tree (default /usr/share, at least 500 MB). Scenario 2
# backs up one 2 GiB file: 1 GiB from /dev/urandom (incompressible) followed by 1 GiB of one
# text line repeated (compresses almost to nothing), i.e. both extremes zstd meets.
#
# Usage: benches/compare-backup.sh [SOURCE_DIR [ROUNDS [WORK_PARENT]]]
#   SOURCE_DIR   tree to back up                          (env SOURCE_DIR, default /usr/share)
#   ROUNDS       measured runs per tool and scenario      (env ROUNDS, default 3)
#   WORK_PARENT  where the scratch directory is created   (env WORK_PARENT, default /var/tmp)
# Other environment:
#   DRP=PATH          drp binary (default: target/release/drp of this workspace)
#   BIG_FILE=PATH     use this file for scenario 2 instead of generating one
#   SKIP_FILE=1       skip scenario 2;  RESTIC_FILE=1  also run restic in scenario 2
#   RESTIC_PASSWORD   password of the throw-away restic repositories (default below)
#
# Method: each round runs every tool once, rotating which goes first. Each run is wrapped in
# GNU `/usr/bin/time -f '%e %M'` (wall seconds, max RSS KiB); for the shell pipeline that is
# the largest RSS of any ONE of its processes, not their sum. Caches cannot be dropped
# reliably, so the source is read once before measuring and every tool sees a warm page cache.
# Outputs are written into the scratch directory (same disk) and deleted after each run.
# The table shows medians; every single run is printed as it happens.

set -euo pipefail
export LC_ALL=C # decimal points in printf and awk

SOURCE_DIR=${1:-${SOURCE_DIR:-/usr/share}}
ROUNDS=${2:-${ROUNDS:-3}}
WORK_PARENT=${3:-${WORK_PARENT:-/var/tmp}}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRP=${DRP:-$HERE/../target/release/drp}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-drp-benchmark-throwaway-repository}

MIN_SOURCE_BYTES=$((500 * 1000 * 1000))
BIG_FILE_BYTES=$((2 * 1024 * 1024 * 1024))
RSS_GOAL_MIB=64

die() { echo "compare-backup: $*" >&2; exit 1; }
say() { echo "== $*"; }

# --- checks -----------------------------------------------------------------------------------
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"
[[ -d $SOURCE_DIR ]] || die "$SOURCE_DIR is not a directory"
[[ -x $DRP ]] || die "no drp binary at $DRP (cargo build --release -p drp-cli, or set DRP=)"
for tool in tar zstd gpg /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
HAVE_RESTIC=1
command -v restic >/dev/null || { HAVE_RESTIC=0; echo "restic is not installed: skipping it"; }

SOURCE_BYTES=$(du -sb "$SOURCE_DIR" | cut -f1)
if ((SOURCE_BYTES < MIN_SOURCE_BYTES)); then
    echo "warning: $SOURCE_DIR holds only $((SOURCE_BYTES / 1000000)) MB, less than the" \
        "500 MB the comparison asks for; pick a bigger tree (e.g. /usr/lib)" >&2
fi

mkdir -p "$WORK_PARENT"
WORK=$(mktemp -d "$WORK_PARENT/drp-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
[[ $(df --output=fstype "$WORK" | tail -n1) != tmpfs ]] ||
    echo "warning: $WORK is on tmpfs: outputs go to memory, not to a disk" >&2

# Enough room for the biggest output plus the 2 GiB file and its copies, with a margin.
need_free() { # BYTES
    local avail
    avail=$(df --output=avail -B1 "$WORK" | tail -n1)
    ((avail > $1 + 1024 * 1024 * 1024)) ||
        die "only $((avail >> 20)) MiB free in $WORK_PARENT, need about $(($1 >> 20)) MiB + 1 GiB"
}
need_free "$SOURCE_BYTES"

# --- setup: one drp key, its certificate in a scratch GnuPG home ------------------------------
KEYS=$WORK/keys
"$DRP" keys generate --name bench --dir "$KEYS" >"$WORK/log" 2>&1 || { cat "$WORK/log"; die "drp keys generate failed"; }
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$KEYS/bench.pub.asc"
FPR=$(gpg --batch --with-colons --list-keys | awk -F: '$1 == "fpr" { print $10; exit }')
OUT=$WORK/out # every run writes here; emptied after each run

# --- one measured run -------------------------------------------------------------------------
declare -A WALL RSS SIZE # "scenario tool" -> space-separated values, one per round

# measure SCENARIO TOOL COMMAND...: runs COMMAND under /usr/bin/time and records its figures
# and the size of what it stored in $OUT; then empties $OUT.
measure() {
    local scenario=$1 tool=$2 rc=0
    shift 2
    mkdir -p "$OUT"
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/log" 2>&1 || rc=$?
    # restic exits 3 when it could not read some files (e.g. sockets); the backup exists.
    if ((rc != 0)) && ! [[ $tool == restic && $rc == 3 ]]; then
        tail -n 20 "$WORK/log" >&2
        die "$tool failed (exit status $rc) in scenario $scenario"
    fi
    ((rc == 0)) || echo "   note: $tool exited with status $rc: $(tail -n1 "$WORK/log")"
    local wall kib bytes
    read -r wall kib < <(tail -n1 "$WORK/time") # time prefixes a line if the status is not 0
    bytes=$(du -sb "$OUT" | cut -f1)
    WALL[$scenario $tool]+="$wall "
    RSS[$scenario $tool]+="$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }') "
    SIZE[$scenario $tool]+="$bytes "
    printf '   %-8s %-12s %7.2f s  %7.1f MiB RSS  %9.1f MB stored\n' \
        "$scenario" "$tool" "$wall" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" \
        "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')"
}

clean_out() { rm -rf "$OUT"; sync; }

# The three ways to back up SOURCE (a directory, or a single file: no tar then, as drp does).
run_drp() { # SCENARIO SOURCE
    measure "$1" drp "$DRP" backup create --store "file://$OUT/drp" --stack bench \
        --recipient "$KEYS/bench.pub.asc" "data=$2"
}
# The peer pipeline, run by `bash -c`: $1 is the source, $2 the key, $3 the output file.
# A single file goes to zstd directly (drp does not tar a file source either).
# shellcheck disable=SC2016 # expanded by the inner bash
PIPELINE_DIR='set -o pipefail; tar -C "$1" -cf - . | zstd -3 -T0 -q |
    gpg --batch --quiet --trust-model always -z 0 --encrypt -r "$2" >"$3"'
# shellcheck disable=SC2016
PIPELINE_FILE='set -o pipefail; zstd -3 -T0 -q -c "$1" |
    gpg --batch --quiet --trust-model always -z 0 --encrypt -r "$2" >"$3"'
run_pipeline() { # SCENARIO SOURCE
    local script=$PIPELINE_DIR
    [[ -f $2 ]] && script=$PIPELINE_FILE
    measure "$1" pipeline bash -c "$script" _ "$2" "$FPR" "$OUT/backup.zst.gpg"
}
run_restic() { # SCENARIO SOURCE
    restic --repo "$OUT/restic" --cache-dir "$OUT/restic-cache" --quiet init >/dev/null
    measure "$1" restic restic --repo "$OUT/restic" --cache-dir "$OUT/restic-cache" \
        --quiet backup "$2"
}

# run_rounds SCENARIO SOURCE TOOL...: ROUNDS rounds, rotating which tool goes first.
run_rounds() {
    local scenario=$1 source=$2 round i n
    shift 2
    local tools=("$@")
    n=${#tools[@]}
    for ((round = 0; round < ROUNDS; round++)); do
        say "$scenario: round $((round + 1)) of $ROUNDS (load average $(cut -d' ' -f1 /proc/loadavg))"
        for ((i = 0; i < n; i++)); do
            "run_${tools[(round + i) % n]}" "$scenario" "$source"
            clean_out
        done
    done
}

# Checks once, outside the timings, that drp's backup of SOURCE reads back correctly.
check_drp() { # SCENARIO SOURCE
    local store=file://$WORK/check
    "$DRP" backup create --store "$store" --stack bench --recipient "$KEYS/bench.pub.asc" \
        "data=$2" >"$WORK/log" 2>&1 || { cat "$WORK/log"; die "$1: drp backup create failed"; }
    if [[ -f $2 ]]; then
        "$DRP" backup restore --store "$store" --stack bench --key "$KEYS/bench.sec.asc" \
            --to "$WORK/restored" >"$WORK/log" 2>&1 ||
            { cat "$WORK/log"; die "$1: drp backup restore failed"; }
        cmp "$2" "$WORK/restored/data" || die "$1: drp restored different bytes"
        echo "   check: drp restore gives back the same $(($(stat -c %s "$2") >> 20)) MiB"
    else
        "$DRP" backup verify --store "$store" --stack bench --key "$KEYS/bench.sec.asc" \
            >"$WORK/log" 2>&1 || { cat "$WORK/log"; die "$1: drp backup verify failed"; }
        echo "   check: drp backup verify read the snapshot back in full: OK"
    fi
    rm -rf "$WORK/check" "$WORK/restored"
}

# --- the table --------------------------------------------------------------------------------
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v goal="$2" 'BEGIN { print (v <= goal ? "met" : "MISSED") }'; }

report() { # SCENARIO DESCRIPTION TOOL...
    local scenario=$1 description=$2 tool
    shift 2
    local -A w r
    echo
    echo "$description, $ROUNDS rounds, warm page cache, medians:"
    printf '  %-28s %10s %14s %14s\n' tool "wall s" "max RSS MiB" "stored MB"
    for tool in "$@"; do
        w[$tool]=$(median <<<"${WALL[$scenario $tool]}")
        r[$tool]=$(median <<<"${RSS[$scenario $tool]}")
        printf '  %-28s %10.2f %14.1f %14.1f\n' "$(label "$scenario" "$tool")" "${w[$tool]}" "${r[$tool]}" \
            "$(awk -v b="$(median <<<"${SIZE[$scenario $tool]}")" 'BEGIN { print b / 1e6 }')"
    done
    local drp_vs_pipeline
    drp_vs_pipeline=$(ratio "${w[drp]}" "${w[pipeline]}")
    echo "  wall drp / pipeline:      ${drp_vs_pipeline}x   goal <= 1.00x: $(verdict "$drp_vs_pipeline" 1.0)"
    [[ -z ${w[restic]:-} ]] ||
        echo "  wall pipeline / restic:   $(ratio "${w[pipeline]}" "${w[restic]}")x"
    echo "  drp max RSS:              ${r[drp]} MiB   goal <= $RSS_GOAL_MIB MiB: $(verdict "${r[drp]}" "$RSS_GOAL_MIB")"
}
label() { # SCENARIO TOOL
    case $2 in
    drp) echo "drp backup create" ;;
    pipeline) [[ $1 == tree ]] && echo "tar|zstd -3 -T0|gpg (*)" || echo "zstd -3 -T0|gpg (*)" ;;
    restic) echo "restic backup" ;;
    esac
}

# --- scenario 1: a directory tree -------------------------------------------------------------
TOOLS=(drp pipeline)
((HAVE_RESTIC)) && TOOLS+=(restic)
say "$("$DRP" --version 2>/dev/null | head -n1), $(gpg --version | head -n1)," \
    "zstd $(zstd --version | grep -o 'v[0-9.]*')," \
    "$(tar --version | head -n1)$( ((HAVE_RESTIC)) && restic version | cut -d' ' -f1-2 | sed 's/^/, /')"
say "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); scratch directory $WORK"
awk -v n="$(nproc)" '$1 > n / 2 { print "warning: the machine is busy (load average " $1 "):",
    "other processes compete for the CPUs and skew the figures" }' /proc/loadavg >&2
say "tree: $SOURCE_DIR, $((SOURCE_BYTES / 1000000)) MB; warming the page cache (one tar read)"
# Through cat: GNU tar skips reading file contents when its output is /dev/null itself.
tar -C "$SOURCE_DIR" -cf - . 2>/dev/null | cat >/dev/null
check_drp tree "$SOURCE_DIR"
run_rounds tree "$SOURCE_DIR" "${TOOLS[@]}"

# --- scenario 2: one 2 GiB file ---------------------------------------------------------------
if [[ ${SKIP_FILE:-0} != 1 ]]; then
    if [[ -n ${BIG_FILE:-} ]]; then
        [[ -f $BIG_FILE ]] || die "BIG_FILE=$BIG_FILE is not a file"
    else
        BIG_FILE=$WORK/big.bin
        need_free $((2 * BIG_FILE_BYTES))
        say "file: generating 2 GiB (1 GiB /dev/urandom + 1 GiB of one repeated text line)"
        { head -c $((BIG_FILE_BYTES / 2)) /dev/urandom
          { yes 'drp benchmark: a line of plain, very compressible text 0123456789' || true; } |
              head -c $((BIG_FILE_BYTES / 2)); } >"$BIG_FILE"
    fi
    need_free "$(stat -c %s "$BIG_FILE")"
    say "file: $BIG_FILE, $(($(stat -c %s "$BIG_FILE") >> 20)) MiB; warming the page cache"
    cat "$BIG_FILE" >/dev/null
    FILE_TOOLS=(drp pipeline)
    ((HAVE_RESTIC)) && [[ ${RESTIC_FILE:-0} == 1 ]] && FILE_TOOLS+=(restic)
    check_drp file "$BIG_FILE"
    run_rounds file "$BIG_FILE" "${FILE_TOOLS[@]}"
fi

# --- results ----------------------------------------------------------------------------------
report tree "Tree $SOURCE_DIR ($((SOURCE_BYTES / 1000000)) MB)" "${TOOLS[@]}"
[[ ${SKIP_FILE:-0} == 1 ]] ||
    report file "File $BIG_FILE ($(($(stat -c %s "$BIG_FILE") >> 20)) MiB)" "${FILE_TOOLS[@]}"
echo
echo "(*) the pipeline's RSS is the largest of any one of its processes (tar, zstd or gpg),"
echo "    not their sum; its stored size is the .gpg file, drp's and restic's the whole store."
