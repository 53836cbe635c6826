#!/usr/bin/env bash
# compare.sh: drp side by side with the tools a team would use instead, on the same data, in
# one run. For each scenario (a directory tree, one big file) it measures:
#
#   backup   drp backup create   vs  tar | zstd -3 -T0 | gpg -z 0 --encrypt   (the "pipeline")
#                                vs  restic backup  (a fresh repository: a full backup)
#                                vs  duplicity full (GnuPG public-key encryption)
#   restore  drp backup restore  vs  gpg --decrypt | zstd -d | tar -x  vs  restic restore
#   verify   drp backup verify   vs  restic check --read-data
#
# and prints, per operation and tool, the medians of wall time, CPU time (user + system),
# peak RSS and stored size, then the ratios drp / peer against the goals.
#
# Usage: benches/compare.sh [SOURCE_DIR [ROUNDS [WORK_PARENT]]]
#   SOURCE_DIR   the tree                               (env SOURCE_DIR, default /usr/share)
#   ROUNDS       measured runs per tool and operation   (env ROUNDS, default 3)
#   WORK_PARENT  where the scratch directory goes       (env WORK_PARENT, default /var/tmp)
# Other environment:
#   DRP=PATH         drp binary (default: target/release/drp of this workspace)
#   FILE_MIB=N       size of the single-file scenario (default 1024: half /dev/urandom, half
#                    one repeated text line); BIG_FILE=PATH uses an existing file instead
#   SCENARIOS="tree file"   which scenarios to run;  OPERATIONS="backup restore verify"
#   TOOLS="drp pipeline restic duplicity"   which tools (drp is always run)
#   NO_INSTALL=1     do not install missing peers (they are then skipped)
#
# Method. Each round runs every tool of an operation once, rotating which goes first. A run
# is wrapped in GNU `/usr/bin/time -f '%e %U %S %M'`: wall seconds, user and system CPU
# seconds of the process and every child it waited for, and the peak RSS (KiB) of the largest
# single process among them (for the shell pipeline: tar, zstd or gpg, not their sum). Page
# caches cannot be dropped reliably, so the source is read once before measuring and every
# tool reads from a warm cache: the figures are CPU figures, not disk figures. Restores and
# verifies read a backup made once per tool before the rounds, outside the timings. Outputs are
# written into the scratch directory (same disk), then removed and synced after each run.
# Correctness is checked once per scenario, outside the timings: drp's restore and the
# pipeline's and restic's restores are compared with the source (`diff -r`, or `cmp`).

set -euo pipefail
export LC_ALL=C # decimal points in printf and awk

SOURCE_DIR=${1:-${SOURCE_DIR:-/usr/share}}
ROUNDS=${2:-${ROUNDS:-3}}
WORK_PARENT=${3:-${WORK_PARENT:-/var/tmp}}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRP=${DRP:-$HERE/../target/release/drp}
FILE_MIB=${FILE_MIB:-1024}
SCENARIOS=${SCENARIOS:-tree file}
OPERATIONS=${OPERATIONS:-backup restore verify}
TOOLS=${TOOLS:-drp pipeline restic duplicity}
# Throw-away secrets of throw-away repositories, named here so that no tool prompts for one.
export RESTIC_PASSWORD=drp-benchmark-throwaway-repository
export PASSPHRASE=

MIN_SOURCE_BYTES=$((500 * 1000 * 1000))
RSS_GOAL_MIB=64

die() { echo "compare: $*" >&2; exit 1; }
say() { echo "== $*"; }

# --- checks and peers -------------------------------------------------------------------------
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"
[[ $FILE_MIB =~ ^[1-9][0-9]*$ ]] || die "FILE_MIB must be a positive number, not '$FILE_MIB'"
[[ -x $DRP ]] || die "no drp binary at $DRP (cargo build --release -p drp-cli, or set DRP=)"
for tool in tar zstd gpg diff cmp; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x /usr/bin/time ]] || die "GNU time is not installed (apt-get install time)"

# Peers come from Debian's packages; installing needs root and a package mirror.
want() { [[ " $TOOLS " == *" $1 "* ]]; }
have_peer() { # TOOL PACKAGE
    command -v "$1" >/dev/null && return 0
    if [[ ${NO_INSTALL:-0} != 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing $2 (Debian package)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } || true
    fi
    command -v "$1" >/dev/null && return 0
    echo "warning: $1 is not installed and could not be installed: skipping it" >&2
    return 1
}
PEERS=()
want pipeline && PEERS+=(pipeline)
want restic && have_peer restic restic && PEERS+=(restic)
want duplicity && have_peer duplicity duplicity && PEERS+=(duplicity)

mkdir -p "$WORK_PARENT"
WORK=$(mktemp -d "$WORK_PARENT/drp-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
[[ $(df --output=fstype "$WORK" | tail -n1) != tmpfs ]] ||
    echo "warning: $WORK is on tmpfs: outputs go to memory, not to a disk" >&2
need_free() { # BYTES WHAT
    local avail
    avail=$(df --output=avail -B1 "$WORK" | tail -n1)
    ((avail > $1 + (1 << 30))) ||
        die "only $((avail >> 20)) MiB free in $WORK_PARENT; $2 needs about $(($1 >> 20)) MiB + 1 GiB"
}

# --- keys: one drp key; gpg gets its certificate and its secret key ---------------------------
KEYS=$WORK/keys
"$DRP" keys generate --name bench --dir "$KEYS" >"$WORK/log" 2>&1 ||
    { cat "$WORK/log"; die "drp keys generate failed"; }
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$KEYS/bench.sec.asc" 2>/dev/null
FPR=$(gpg --batch --with-colons --list-keys | awk -F: '$1 == "fpr" { print $10; exit }')
[[ -n $FPR ]] || die "gpg did not import the benchmark key"
gpgq() { gpg --batch --quiet --trust-model always "$@"; }

# --- one measured run -------------------------------------------------------------------------
OUT=$WORK/out         # what a measured run writes; emptied after each run
BACKUPS=$WORK/backups # one backup per tool and scenario, read by restores and verifies
declare -A WALL CPU RSS SIZE # "scenario operation tool" -> values, one per round

# measure SCENARIO OPERATION TOOL COMMAND...: runs COMMAND under /usr/bin/time, records its
# figures and the size of $OUT (what it stored), then empties $OUT.
measure() {
    local scenario=$1 operation=$2 tool=$3 rc=0
    shift 3
    mkdir -p "$OUT"
    # Through bash, which runs the exported tool functions below (and reaps every child).
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" bash -o pipefail -c '"$@"' _ "$@" \
        >"$WORK/log" 2>&1 || rc=$?
    # restic exits 3 when it could not read some files (e.g. sockets); the backup exists.
    if ((rc != 0)) && ! [[ $tool == restic && $operation == backup && $rc == 3 ]]; then
        tail -n 20 "$WORK/log" >&2
        die "$tool failed (exit status $rc): $scenario $operation"
    fi
    local wall user sys kib bytes cpu
    read -r wall user sys kib < <(tail -n1 "$WORK/time") # time adds a line if status != 0
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    bytes=0 # what a backup stored: the repository, not restic's cache or duplicity's archive
    [[ ! -e $OUT/repo ]] || bytes=$(du -sb "$OUT/repo" | cut -f1)
    local key="$scenario $operation $tool"
    WALL[$key]+="$wall "
    CPU[$key]+="$cpu "
    RSS[$key]+="$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }') "
    SIZE[$key]+="$bytes "
    printf '   %-5s %-8s %-10s %7.2f s wall %7.2f s CPU %7.1f MiB RSS' \
        "$scenario" "$operation" "$tool" "$wall" "$cpu" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
    [[ $operation != backup ]] || printf ' %9.1f MB stored' "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')"
    echo
    rm -rf "$OUT"
    sync
}

# --- the tools --------------------------------------------------------------------------------
# Each backup_TOOL SOURCE DEST writes a full backup of SOURCE (a directory or one file) to DEST.
# A single file is not put in a tar by drp, so the pipeline does not tar it either.
backup_drp() {
    "$DRP" backup create --store "file://$2" --stack bench --recipient "$KEYS/bench.pub.asc" "data=$1"
}
backup_pipeline() {
    mkdir -p "$2"
    if [[ -d $1 ]]; then
        tar -C "$1" -cf - . | zstd -3 -T0 -q | gpgq -z 0 --encrypt -r "$FPR" >"$2/backup.gpg"
    else
        zstd -3 -T0 -q -c "$1" | gpgq -z 0 --encrypt -r "$FPR" >"$2/backup.gpg"
    fi
}
backup_restic() {
    restic --repo "$2" --cache-dir "$2.cache" --quiet init >/dev/null
    restic --repo "$2" --cache-dir "$2.cache" --quiet backup "$1"
}
backup_duplicity() {
    duplicity full --encrypt-key "$FPR" --gpg-options "--trust-model always" \
        --archive-dir "$2.archive" --no-print-statistics --verbosity error "$1" "file://$2"
}

# Each restore_TOOL BACKUP TO restores the backup at BACKUP (made by backup_TOOL) into TO:
# a directory source into TO/data/, a file source into the file TO/data.
restore_drp() {
    "$DRP" backup restore --store "file://$1" --stack bench --key "$KEYS/bench.sec.asc" --to "$2"
}
restore_pipeline() {
    mkdir -p "$2"
    if [[ $SOURCE_KIND == directory ]]; then
        mkdir "$2/data"
        gpgq --decrypt "$1/backup.gpg" | zstd -d -q | tar -C "$2/data" -xf -
    else
        gpgq --decrypt "$1/backup.gpg" | zstd -d -q >"$2/data"
    fi
}
restore_restic() {
    # restic restores the absolute path of the source below the target; move it to TO/data.
    restic --repo "$1" --cache-dir "$1.cache" --quiet restore latest --target "$2/restic"
    mv "$2/restic$SOURCE" "$2/data"
    rm -rf "$2/restic"
}

verify_drp() {
    "$DRP" backup verify --store "file://$1" --stack bench --key "$KEYS/bench.sec.asc"
}
verify_restic() {
    restic --repo "$1" --cache-dir "$1.cache" --quiet check --read-data
}

export -f gpgq backup_drp backup_pipeline backup_restic backup_duplicity restore_drp \
    restore_pipeline restore_restic verify_drp verify_restic
export DRP KEYS FPR

# Which peers take part in each operation (drp always does).
peers_of() { # OPERATION
    local tool
    for tool in "${PEERS[@]}"; do
        case $1:$tool in
        backup:*) echo "$tool" ;;
        restore:pipeline | restore:restic | verify:restic) echo "$tool" ;;
        esac
    done
}

# run_operation SCENARIO OPERATION: ROUNDS rounds of drp and its peers, rotating the order.
run_operation() {
    local scenario=$1 operation=$2 round i n tool
    local tools=(drp)
    mapfile -t -O 1 tools < <(peers_of "$operation")
    n=${#tools[@]}
    for ((round = 0; round < ROUNDS; round++)); do
        say "$scenario $operation: round $((round + 1)) of $ROUNDS (load average $(cut -d' ' -f1 /proc/loadavg))"
        for ((i = 0; i < n; i++)); do
            tool=${tools[(round + i) % n]}
            case $operation in
            backup) measure "$scenario" backup "$tool" "backup_$tool" "$SOURCE" "$OUT/repo" ;;
            restore) measure "$scenario" restore "$tool" "restore_$tool" "$BACKUPS/$tool" "$OUT" ;;
            verify) measure "$scenario" verify "$tool" "verify_$tool" "$BACKUPS/$tool" ;;
            esac
        done
    done
}

# The backups that restores and verifies read, made once; each restore is checked against the
# source here, so that a fast but wrong tool cannot look good.
prepare_backups() { # SCENARIO
    local tool
    rm -rf "$BACKUPS"
    for tool in drp $(peers_of restore) $(peers_of verify | grep -vx -e drp -e pipeline); do
        [[ -e $BACKUPS/$tool ]] && continue
        local rc=0
        bash -o pipefail -c '"$@"' _ "backup_$tool" "$SOURCE" "$BACKUPS/$tool" >"$WORK/log" 2>&1 || rc=$?
        ((rc == 0)) || [[ $tool == restic && $rc == 3 ]] || { cat "$WORK/log"; die "$1: $tool backup failed"; }
    done
    for tool in drp $(peers_of restore); do
        rm -rf "$WORK/check"
        bash -o pipefail -c '"$@"' _ "restore_$tool" "$BACKUPS/$tool" "$WORK/check" >"$WORK/log" 2>&1 ||
            { cat "$WORK/log"; die "$1: $tool restore failed"; }
        if [[ $SOURCE_KIND == directory ]]; then
            diff -r --no-dereference "$SOURCE" "$WORK/check/data" >"$WORK/diff" 2>&1 ||
                { head -n 20 "$WORK/diff"; die "$1: $tool restored a tree that differs from $SOURCE"; }
        else
            cmp "$SOURCE" "$WORK/check/data" || die "$1: $tool restored different bytes"
        fi
        echo "   check: $tool restores exactly what it backed up"
    done
    rm -rf "$WORK/check"
}

# --- the table --------------------------------------------------------------------------------
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v goal="$2" 'BEGIN { print (v <= goal ? "met" : "MISSED") }'; }

label() { # OPERATION TOOL
    case $1:$2 in
    backup:drp) echo "drp backup create" ;;
    backup:pipeline) [[ $SOURCE_KIND == directory ]] && echo "tar|zstd -3 -T0|gpg" || echo "zstd -3 -T0|gpg" ;;
    backup:restic) echo "restic backup" ;;
    backup:duplicity) echo "duplicity full" ;;
    restore:drp) echo "drp backup restore" ;;
    restore:pipeline) [[ $SOURCE_KIND == directory ]] && echo "gpg -d|zstd -d|tar -x" || echo "gpg -d|zstd -d" ;;
    restore:restic) echo "restic restore" ;;
    verify:drp) echo "drp backup verify" ;;
    verify:restic) echo "restic check --read-data" ;;
    esac
}

# The goals of the benchmarks issue: operation:peer -> the largest ratio drp / peer.
declare -A GOAL=([backup:pipeline]=1.00 [backup:restic]=0.30 [restore:restic]=1.00 [verify:restic]=1.00)

report() { # SCENARIO DESCRIPTION
    local scenario=$1 operation tool key peer
    echo
    echo "$2: $ROUNDS rounds, warm page cache, medians"
    printf '  %-10s %-26s %9s %9s %9s %11s\n' operation tool "wall s" "CPU s" "RSS MiB" "stored MB"
    for operation in $OPERATIONS; do
        local -A w=() c=() r=()
        for tool in drp $(peers_of "$operation"); do
            key="$scenario $operation $tool"
            [[ -n ${WALL[$key]:-} ]] || continue
            w[$tool]=$(median <<<"${WALL[$key]}")
            c[$tool]=$(median <<<"${CPU[$key]}")
            r[$tool]=$(median <<<"${RSS[$key]}")
            printf '  %-10s %-26s %9.2f %9.2f %9.1f' "$operation" "$(label "$operation" "$tool")" \
                "${w[$tool]}" "${c[$tool]}" "${r[$tool]}"
            if [[ $operation == backup ]]; then
                printf ' %11.1f' "$(awk -v b="$(median <<<"${SIZE[$key]}")" 'BEGIN { print b / 1e6 }')"
            fi
            echo
        done
        for peer in $(peers_of "$operation"); do
            [[ -n ${w[$peer]:-} ]] || continue
            local line goal
            line=$(printf '    drp / %-24s wall %5sx   CPU %5sx' "$(label "$operation" "$peer")" \
                "$(ratio "${w[drp]}" "${w[$peer]}")" "$(ratio "${c[drp]}" "${c[$peer]}")")
            goal=${GOAL[$operation:$peer]:-}
            [[ -z $goal ]] || line+="   goal wall <= ${goal}x: $(verdict "$(ratio "${w[drp]}" "${w[$peer]}")" "$goal")"
            echo "$line"
        done
        echo "    drp peak RSS ${r[drp]} MiB   goal <= $RSS_GOAL_MIB MiB: $(verdict "${r[drp]}" "$RSS_GOAL_MIB")"
    done
}

# --- run --------------------------------------------------------------------------------------
say "$("$DRP" --version | head -n1), $(gpg --version | head -n1), zstd $(zstd --version | grep -o 'v[0-9.]*')," \
    "$(tar --version | head -n1)$(for p in "${PEERS[@]}"; do case $p in
        restic) echo -n ", $(restic version | cut -d' ' -f1-2)" ;;
        duplicity) echo -n ", $(duplicity --version)" ;; esac; done)"
say "$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg); scratch directory $WORK"
awk -v n="$(nproc)" '$1 > n / 2 { print "warning: the machine is busy (load average " $1 "):",
    "other processes compete for the CPUs and skew the figures" }' /proc/loadavg >&2

DESCRIPTIONS=()
for scenario in $SCENARIOS; do
    case $scenario in
    tree)
        [[ -d $SOURCE_DIR ]] || die "$SOURCE_DIR is not a directory"
        SOURCE=$(cd "$SOURCE_DIR" && pwd)
        export SOURCE SOURCE_KIND=directory
        bytes=$(du -sb "$SOURCE" | cut -f1)
        ((bytes >= MIN_SOURCE_BYTES)) || echo "warning: $SOURCE holds only $((bytes / 1000000)) MB," \
            "less than the 500 MB the comparison asks for; pick a bigger tree (e.g. /usr/lib)" >&2
        need_free $((3 * bytes)) "the tree's backups"
        DESCRIPTION="Tree $SOURCE ($((bytes / 1000000)) MB, $(find "$SOURCE" | wc -l) entries)"
        say "tree: $SOURCE; warming the page cache (one tar read)"
        # Through cat: GNU tar skips reading file contents when its output is /dev/null itself.
        tar -C "$SOURCE" -cf - . 2>/dev/null | cat >/dev/null
        ;;
    file)
        export SOURCE SOURCE_KIND=file
        if [[ -n ${BIG_FILE:-} ]]; then
            [[ -f $BIG_FILE ]] || die "BIG_FILE=$BIG_FILE is not a file"
            SOURCE=$BIG_FILE
        else
            SOURCE=$WORK/big.bin
            need_free $((4 * FILE_MIB << 20)) "the file scenario"
            say "file: generating $FILE_MIB MiB (half /dev/urandom, half one repeated text line)"
            { head -c $((FILE_MIB << 19)) /dev/urandom
              { yes 'drp benchmark: a line of plain, very compressible text 0123456789' || true; } |
                  head -c $((FILE_MIB << 19)); } >"$SOURCE"
        fi
        bytes=$(stat -c %s "$SOURCE")
        DESCRIPTION="File $SOURCE ($((bytes >> 20)) MiB)"
        say "file: warming the page cache"
        cat "$SOURCE" >/dev/null
        ;;
    *) die "unknown scenario '$scenario' (tree, file)" ;;
    esac
    if [[ " $OPERATIONS " == *" restore "* || " $OPERATIONS " == *" verify "* ]]; then
        prepare_backups "$scenario"
    fi
    for operation in $OPERATIONS; do
        case $operation in backup | restore | verify) ;; *) die "unknown operation '$operation'" ;; esac
        run_operation "$scenario" "$operation"
    done
    rm -rf "$BACKUPS" "$WORK/big.bin"
    DESCRIPTIONS+=("$scenario" "$DESCRIPTION")
    eval "KIND_$scenario=$SOURCE_KIND"
done

for ((i = 0; i < ${#DESCRIPTIONS[@]}; i += 2)); do
    eval "SOURCE_KIND=\$KIND_${DESCRIPTIONS[i]}"
    report "${DESCRIPTIONS[i]}" "${DESCRIPTIONS[i + 1]}"
done
echo
echo "RSS is the peak of the largest single process: for the pipeline, of tar, zstd or gpg, not"
echo "their sum. Stored size: the .gpg file for the pipeline, the whole store or repository for"
echo "the others. CPU is user + system time of the tool and every process it started."
