#!/usr/bin/env bash
# scaling.sh: how the `drp` binary's cost grows with the size of the job.
#
#   1. Recovery of N stacks (default N = 1 10 50 200): wall time, CPU time and peak memory of
#      `drp recover` per N, and the wall time per stack, to show that the executor's
#      per-stack overhead stays flat as N grows.
#   2. Backup of one big file (default 1 GiB and 8 GiB): wall time, CPU time, peak memory and
#      throughput of `drp backup create`, to show that peak memory does not grow with the size
#      of the data (goal: <= 64 MiB at every size).
#
# Usage: benches/scaling.sh
# Environment:
#   DRP=PATH          drp binary (default: target/release/drp of this workspace)
#   N="1 10 50 200"   stack counts of the recovery part
#   REPS=3            measured recoveries per N (the table shows medians)
#   PARALLELISM=4     the plan's [recovery] parallelism (4 is drp's default)
#   SIZES="1 8"       file sizes of the backup part, in GiB
#   BACKUP_RUNS=2     measured backups per size
#   WORK_PARENT=/var/tmp   where the scratch directory is created (removed on exit)
#   SKIP_RECOVERY=1, SKIP_BACKUP=1   leave a part out
#
# Method, recovery: for each N, a plan with N stacks, N spare hosts and one customer, written
# in the scratch directory. Every host uses the local transport (`transport = "local"`, a
# directory of its own, as `drp demo` does), so no SSH and no network is measured. Each stack
# has two small sources: a directory of three files (about 20 KiB) and a command's output,
# restored into `srv/STACK` on its spare, and one start command; no probes, no notifiers (the
# probe and notification code is not what is measured here). The stacks are independent: up
# to PARALLELISM run at once. Setup, not timed: keys (`drp keys generate`: one customer key,
# one ops signing key), `drp plan check`, `drp backup create --plan --all`. Each measured run
# is `drp recover --plan drp.toml --yes` under GNU `/usr/bin/time -f '%e %U %S %M'` (wall s,
# user s, system s, max RSS KiB), output to a file. Between runs the targets are reset: the
# spares' restored files, the store's `.drp` (lock, leases, run journals) and the local
# journal copies are deleted, so every run starts from the same state. After the first run of
# each N, every stack's restored bytes are compared with its source (`diff -r`, `cmp`): a
# fast but broken recovery must not look good.
#
# Method, backup: a file of SIZE GiB, half pseudo-random (AES-CTR keystream from openssl, or
# /dev/urandom: incompressible), half one text line repeated (compresses to almost nothing),
# is backed up with `drp backup create --store file://… data=FILE` (zstd 3, OpenPGP to one
# certificate) under `/usr/bin/time`. The file is read once before measuring (warm page cache
# when it fits in memory). The store is deleted (then `sync`) after each run. Once per size,
# outside the timings, `drp backup verify` reads the snapshot back in full (its wall time and
# peak RSS are printed too). Free disk space is checked first.
#
# Other work on the machine skews everything: the load average is printed at the start and at
# each step, with a warning when the machine is busy.

set -euo pipefail
export LC_ALL=C # decimal points in printf and awk

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRP=${DRP:-$HERE/../target/release/drp}
N_LIST=${N:-1 10 50 200}
REPS=${REPS:-3}
PARALLELISM=${PARALLELISM:-4}
SIZES=${SIZES:-1 8}
BACKUP_RUNS=${BACKUP_RUNS:-2}
WORK_PARENT=${WORK_PARENT:-/var/tmp}
RSS_GOAL_MIB=64
GIB=$((1024 * 1024 * 1024))

die() { echo "scaling: $*" >&2; exit 1; }
say() { echo "== $*"; }
load() { cut -d' ' -f1 /proc/loadavg; }
warn_if_busy() {
    awk -v n="$(nproc)" '$1 > n / 2 { print "warning: the machine is busy (load average " $1 "):",
        "other processes compete for the CPUs and skew the figures" }' /proc/loadavg >&2
}

# --- checks -----------------------------------------------------------------------------------
for v in REPS PARALLELISM BACKUP_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not '${!v}'"
done
for n in $N_LIST; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "N: '$n' is not a positive number"; done
for s in $SIZES; do [[ $s =~ ^[1-9][0-9]*$ ]] || die "SIZES: '$s' is not a whole number of GiB"; done
[[ -x $DRP ]] || die "no drp binary at $DRP (cargo build --release -p drp-cli, or set DRP=)"
[[ -x /usr/bin/time ]] || die "GNU /usr/bin/time is not installed (Debian: apt-get install time)"
for tool in diff cmp awk; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

mkdir -p "$WORK_PARENT"
WORK=$(mktemp -d "$WORK_PARENT/drp-scaling.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
[[ $(df --output=fstype "$WORK" | tail -n1) != tmpfs ]] ||
    echo "warning: $WORK is on tmpfs: files go to memory, not to a disk" >&2

free_bytes() { df --output=avail -B1 "$WORK" | tail -n1; }

# --- the machine ------------------------------------------------------------------------------
say "$("$DRP" --version 2>/dev/null | head -n1)"
say "$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "scratch directory $WORK ($(($(free_bytes) >> 30)) GiB free)"
warn_if_busy

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maximum() { tr ' ' '\n' | grep . | sort -g | tail -n1; }

# timed OUT_LOG COMMAND...: runs COMMAND under /usr/bin/time; sets T_WALL T_CPU T_RSS_MIB.
# Dies with the end of the log if COMMAND fails.
timed() {
    local log=$1 rc=0
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -n 30 "$log" >&2
        die "failed (exit status $rc): $*"
    fi
    read_time
}

# Sets T_WALL T_CPU T_RSS_MIB from the last /usr/bin/time output (time prefixes a line when
# the status is not 0, so the figures are on the last line).
read_time() {
    local user sys kib
    read -r T_WALL user sys kib < <(tail -n1 "$WORK/time")
    T_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    T_RSS_MIB=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
}

# Quiet setup command: prints its output only if it fails.
setup() {
    "$@" >"$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log" >&2; die "setup failed: $*"; }
}

# --- part 1: recovery of N stacks -------------------------------------------------------------

# recovery_plan DIR N: the plan of N stacks onto N spares, all with the local transport.
recovery_plan() {
    local dir=$1 n=$2 i s
    cat <<EOF
# Written by benches/scaling.sh: $n stacks onto $n local spares.
format = 1
name = "scaling-$n"

[storage]
url = "file://$dir/store"
signing_key = "keys/ops.sec.asc"
trust = ["keys/ops.pub.asc"]

[customers.c]
certificates = ["keys/c.pub.asc"]
secret_key = "keys/c.sec.asc"

[datacenters.spare]

[recovery]
target_datacenter = "spare"
parallelism = $PARALLELISM
retries = 0
EOF
    for ((i = 0; i < n; i++)); do
        printf '\n[[hosts]]\nname = "spare-%04d"\ndatacenter = "spare"\naddress = "127.0.0.1"\n' "$i"
        printf 'transport = "local"\ndir = "hosts/spare-%04d"\nroles = ["app"]\nspare = true\n' "$i"
    done
    for ((i = 0; i < n; i++)); do
        s=$(printf 's%04d' "$i")
        cat <<EOF

[stacks.$s]
customer = "c"
role = "app"
sources = [
  { name = "www", path = "$dir/data/$s/www", restore_to = "srv/$s" },
  { name = "db", command = "cat $dir/data/$s/db.sql", restore_to = "srv/$s" },
]
start_commands = ["touch srv/$s/started"]
EOF
    done
}

# The small data of each stack: three files (one of 16 KiB random bytes) and a "dump".
recovery_data() { # DIR N
    local dir=$1 n=$2 i s
    for ((i = 0; i < n; i++)); do
        s=$(printf 's%04d' "$i")
        mkdir -p "$dir/data/$s/www/assets" "$dir/hosts/spare-$(printf '%04d' "$i")"
        printf '<h1>stack %s</h1>\n' "$s" >"$dir/data/$s/www/index.html"
        printf 'listen = 8080\nname = %s\n' "$s" >"$dir/data/$s/www/app.conf"
        head -c 16384 /dev/urandom >"$dir/data/$s/www/assets/blob.bin"
        printf -- '-- %s dump\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (%d);\n' \
            "$s" "$i" >"$dir/data/$s/db.sql"
    done
}

# Back to the state before any recovery: no restored files, no lock, leases or journals.
reset_targets() { # DIR
    rm -rf "$1"/hosts/*/srv "$1/store/.drp" "$1/.drp"
}

# Every stack restored, once, byte for byte, and started.
check_recovery() { # DIR N
    local dir=$1 n=$2 i s found
    for ((i = 0; i < n; i++)); do
        s=$(printf 's%04d' "$i")
        found=("$dir"/hosts/*/srv/"$s")
        if ((${#found[@]} != 1)) || [[ ! -d ${found[0]} ]]; then
            die "N=$n: stack $s was restored ${#found[@]} times (${found[*]})"
        fi
        diff -r "$dir/data/$s/www" "${found[0]}/www" >&2 || die "N=$n: $s/www differs"
        cmp "$dir/data/$s/db.sql" "${found[0]}/db" || die "N=$n: $s/db differs"
        [[ -f ${found[0]}/started ]] || die "N=$n: $s's start command did not run"
    done
    echo "   check: all $n stacks restored byte for byte (diff -r, cmp) and started: OK"
}

declare -A R_WALL R_CPU R_RSS # N -> space-separated values, one per repetition
declare -A R_EVENTS           # N -> journal events of one run

recovery_part() {
    local n dir rep events
    for n in $N_LIST; do
        dir=$WORK/recovery-$n
        mkdir -p "$dir"
        say "recovery, N=$n: setup (keys, plan, $n backups), load average $(load)"
        setup "$DRP" keys generate --name c --dir "$dir/keys"
        setup "$DRP" keys generate --name ops --dir "$dir/keys"
        recovery_data "$dir" "$n"
        recovery_plan "$dir" "$n" >"$dir/drp.toml"
        setup "$DRP" plan check "$dir/drp.toml"
        setup "$DRP" backup create --plan "$dir/drp.toml" --all
        for ((rep = 1; rep <= REPS; rep++)); do
            reset_targets "$dir"
            timed "$dir/recover.log" "$DRP" recover --plan "$dir/drp.toml" --yes
            R_WALL[$n]+="$T_WALL "
            R_CPU[$n]+="$T_CPU "
            R_RSS[$n]+="$T_RSS_MIB "
            printf '   N=%-4s run %d/%d: %7.2f s wall, %7.2f s CPU, %6.1f MiB max RSS (load %s)\n' \
                "$n" "$rep" "$REPS" "$T_WALL" "$T_CPU" "$T_RSS_MIB" "$(load)"
            if ((rep == 1)); then
                check_recovery "$dir" "$n"
                events=$(cat "$dir"/.drp/runs/*.jsonl 2>/dev/null | wc -l)
                R_EVENTS[$n]=$events
            fi
        done
        rm -rf "$dir"
    done
}

recovery_report() {
    local n w c r first="" w1="" per per1="" per10="" marginal
    echo
    echo "Recovery of N stacks (local transport, 2 small sources + 1 start command a stack," \
        "parallelism $PARALLELISM, $REPS runs, medians; RSS: the largest run):"
    printf '  %5s %8s %12s %14s %8s %9s %10s %10s %8s\n' N "wall s" "ms/stack" \
        "marginal ms/st" "CPU s" "RSS MiB" "vs N=1" "vs N=10" events
    for n in $N_LIST; do
        w=$(median <<<"${R_WALL[$n]}")
        c=$(median <<<"${R_CPU[$n]}")
        r=$(maximum <<<"${R_RSS[$n]}")
        per=$(awk -v w="$w" -v n="$n" 'BEGIN { printf "%.1f", w * 1000 / n }')
        [[ -n $first ]] || { first=$n; w1=$w; }
        [[ $n != 1 ]] || per1=$per
        [[ $n != 10 ]] || per10=$per
        # The cost of each stack beyond the first run's: (wall(N) - wall(first)) / (N - first).
        if ((n > first)); then
            marginal=$(awk -v w="$w" -v w1="$w1" -v n="$n" -v f="$first" \
                'BEGIN { printf "%.1f", (w - w1) * 1000 / (n - f) }')
        else
            marginal=-
        fi
        printf '  %5s %8.2f %12s %14s %8.2f %9.1f %10s %10s %8s\n' "$n" "$w" "$per" "$marginal" \
            "$c" "$r" "$(rel "$per" "$per1")" "$(rel "$per" "$per10")" "${R_EVENTS[$n]:-?}"
    done
    echo "  ms/stack: wall / N. marginal: (wall(N) - wall(N=$first)) / (N - $first), the cost of"
    echo "  one more stack. vs N=1, vs N=10: ms/stack relative to that N's (flat: about 1.00 for"
    echo "  N >= 10; N=1 also carries the fixed start-up cost and cannot use the parallelism)."
    echo "  events: lines of the run's local journal copy."
}
rel() { # VALUE BASE
    [[ -n $2 ]] || { echo -; return; }
    awk -v v="$1" -v b="$2" 'BEGIN { printf "%.2f", v / b }'
}

# --- part 2: backup of one big file -----------------------------------------------------------

# make_file PATH GIB: half keystream/urandom, half one text line repeated.
make_file() {
    local path=$1 bytes=$(($2 * GIB))
    {
        if command -v openssl >/dev/null; then
            # AES-CTR keystream: as incompressible as /dev/urandom, and much faster.
            { openssl enc -aes-128-ctr -nosalt -pass "pass:drp-scaling-$RANDOM" \
                -pbkdf2 -in /dev/zero 2>/dev/null || true; } | head -c $((bytes / 2))
        else
            head -c $((bytes / 2)) /dev/urandom
        fi
        { yes 'drp benchmark: a line of plain, very compressible text 0123456789' || true; } |
            head -c $((bytes - bytes / 2))
    } >"$path"
    (($(stat -c %s "$path") == bytes)) || die "$path: expected $bytes bytes"
}

declare -A B_WALL B_CPU B_RSS

backup_part() {
    local size file store bytes need run
    say "backup: setup (a key), load average $(load)"
    setup "$DRP" keys generate --name big --dir "$WORK/big-keys"
    for size in $SIZES; do
        file=$WORK/big-$size.bin
        bytes=$((size * GIB))
        # The file, the store (about half the file: the random half), and 1 GiB to spare.
        need=$((bytes + bytes / 2 + GIB))
        (($(free_bytes) > need)) ||
            die "only $(($(free_bytes) >> 20)) MiB free in $WORK_PARENT, the $size GiB backup" \
                "needs about $((need >> 20)) MiB (set SIZES or WORK_PARENT)"
        say "backup, $size GiB: generating the file (half random, half text)"
        make_file "$file" "$size"
        cat "$file" >/dev/null # warm the page cache (as far as it fits)
        store=$WORK/store-$size
        for ((run = 1; run <= BACKUP_RUNS; run++)); do
            rm -rf "$store"
            sync
            timed "$WORK/backup.log" "$DRP" backup create --store "file://$store" --stack big \
                --recipient "$WORK/big-keys/big.pub.asc" "data=$file"
            B_WALL[$size]+="$T_WALL "
            B_CPU[$size]+="$T_CPU "
            B_RSS[$size]+="$T_RSS_MIB "
            printf '   %s GiB run %d/%d: %7.2f s wall, %7.2f s CPU, %6.1f MiB max RSS, %6.1f MB/s (load %s)\n' \
                "$size" "$run" "$BACKUP_RUNS" "$T_WALL" "$T_CPU" "$T_RSS_MIB" \
                "$(awk -v b="$bytes" -v w="$T_WALL" 'BEGIN { printf "%.1f", b / w / 1e6 }')" "$(load)"
        done
        timed "$WORK/verify.log" "$DRP" backup verify --store "file://$store" --stack big \
            --key "$WORK/big-keys/big.sec.asc"
        printf '   check: drp backup verify read the %s GiB snapshot back in full: OK' "$size"
        printf ' (%.2f s wall, %.1f MiB max RSS)\n' "$T_WALL" "$T_RSS_MIB"
        rm -rf "$store" "$file"
        sync
    done
}

backup_report() {
    local size w c r bytes
    echo
    echo "Backup of one file (half random, half text; zstd 3; OpenPGP to one key; file://" \
        "store), $BACKUP_RUNS runs, median wall and CPU, largest RSS:"
    printf '  %8s %9s %9s %10s %10s %s\n' size "wall s" "CPU s" "MB/s" "RSS MiB" "goal <= $RSS_GOAL_MIB MiB"
    for size in $SIZES; do
        bytes=$((size * GIB))
        w=$(median <<<"${B_WALL[$size]}")
        c=$(median <<<"${B_CPU[$size]}")
        r=$(maximum <<<"${B_RSS[$size]}")
        printf '  %4s GiB %9.2f %9.2f %10.1f %10.1f %s\n' "$size" "$w" "$c" \
            "$(awk -v b="$bytes" -v w="$w" 'BEGIN { printf "%.1f", b / w / 1e6 }')" "$r" \
            "$(awk -v r="$r" -v g="$RSS_GOAL_MIB" 'BEGIN { print (r <= g ? "met" : "MISSED") }')"
    done
}

# --- run --------------------------------------------------------------------------------------
[[ ${SKIP_RECOVERY:-0} == 1 ]] || recovery_part
[[ ${SKIP_BACKUP:-0} == 1 ]] || backup_part
say "done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
warn_if_busy
[[ ${SKIP_RECOVERY:-0} == 1 ]] || recovery_report
[[ ${SKIP_BACKUP:-0} == 1 ]] || backup_report
