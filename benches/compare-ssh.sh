#!/usr/bin/env bash
# compare-ssh.sh: throughput of a 1 GiB stream through drp's SSH transport (libssh2, via the
# `ssh-stream` helper of this crate) versus OpenSSH's own client, `ssh HOST cat FILE`, both
# against one OpenSSH sshd started on 127.0.0.1 for the run.
#
# Usage: benches/compare-ssh.sh [ROUNDS [WORK_PARENT]]
#   ROUNDS       measured runs per client                (env ROUNDS, default 5)
#   WORK_PARENT  where the scratch directory is created  (env WORK_PARENT, default /var/tmp)
# Other environment:
#   SSH_STREAM=PATH  the drp side (default: target/release/ssh-stream of this workspace)
#   SIZE_MIB=N       size of the streamed file (default 1024)
#
# Method: one file of SIZE_MIB (half pseudo-random, half text; the content does not matter to
# SSH, which does not compress here) is streamed with `cat` on the server side. In each round
# both clients run once, alternating which goes first; each run is wrapped in GNU
# `/usr/bin/time -f '%e %M'`. OpenSSH's client is measured twice: with its default cipher
# (what `ssh HOST cat` does out of the box) and with the cipher libssh2 negotiated, so the
# ratio separates cipher choice from implementation. The table shows medians and the ratios
# drp/ssh of the medians (a ratio above 1 means drp moves the data faster).

set -euo pipefail
export LC_ALL=C

ROUNDS=${1:-${ROUNDS:-5}}
WORK_PARENT=${2:-${WORK_PARENT:-/var/tmp}}
SIZE_MIB=${SIZE_MIB:-1024}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SSH_STREAM=${SSH_STREAM:-$HERE/../target/release/ssh-stream}

die() { echo "compare-ssh: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"
[[ -x $SSH_STREAM ]] || die "no ssh-stream at $SSH_STREAM (cargo build --release -p drp-benches --bin ssh-stream)"
for tool in /usr/sbin/sshd ssh ssh-keygen /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install openssh-server openssh-client time)"
done

mkdir -p "$WORK_PARENT"
WORK=$(mktemp -d "$WORK_PARENT/drp-ssh-bench.XXXXXX")
SSHD_PID=
cleanup() {
    [[ -z $SSHD_PID ]] || kill "$SSHD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- an sshd of our own on a free loopback port ------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id"
cp "$WORK/id.pub" "$WORK/authorized_keys"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/hostkey.pub")" >"$WORK/known_hosts"
cat >"$WORK/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/hostkey
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
LogLevel DEBUG1
CONF
mkdir -p /run/sshd 2>/dev/null || true
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
done
USER_NAME=$(id -un)
SSH=(ssh -q -p "$PORT" -i "$WORK/id" -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile="$WORK/known_hosts" -o StrictHostKeyChecking=yes "$USER_NAME@127.0.0.1")

# --- the data ---------------------------------------------------------------------------------
DATA=$WORK/data
head -c $((SIZE_MIB / 2))M /dev/urandom >"$DATA"
{ yes 'drp benchmark: a line of plain, very compressible text 0123456789' || true; } | head -c $((SIZE_MIB - SIZE_MIB / 2))M >>"$DATA"
BYTES=$(stat -c %s "$DATA")
cat "$DATA" >/dev/null # warm the page cache

# Which ciphers are negotiated: OpenSSH's client prints its choice with -vv; for libssh2, sshd
# logs it at DEBUG1 (the last kex line after the drp client connected).
DEFAULT_CIPHER=$("${SSH[@]}" -vv true 2>&1 | sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -n1)
"$SSH_STREAM" "$USER_NAME@127.0.0.1:$PORT" "$WORK/id" "$WORK/known_hosts" true >/dev/null
sleep 0.2 # sshd's log line may trail the client's exit
DRP_CIPHER=$(sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' "$WORK/sshd.log" | tail -n1)
[[ -n $DEFAULT_CIPHER && -n $DRP_CIPHER ]] || die "could not tell the negotiated ciphers (see $WORK/sshd.log)"
echo "server: OpenSSH $(ssh -V 2>&1 | cut -d' ' -f1); OpenSSH client's default cipher: $DEFAULT_CIPHER; drp (libssh2): $DRP_CIPHER"
echo "data: $BYTES bytes; $ROUNDS rounds"

# --- measurements -----------------------------------------------------------------------------
declare -A WALL
measure() { # NAME COMMAND...
    local name=$1
    shift
    /usr/bin/time -o "$WORK/time" -f '%e %M' "$@" >"$WORK/out" 2>"$WORK/err" ||
        { cat "$WORK/err" >&2; die "$name failed"; }
    local wall rss
    read -r wall rss <"$WORK/time"
    if [[ $name == ssh* ]]; then
        [[ $(stat -c %s "$WORK/out") == "$BYTES" ]] || die "$name delivered $(stat -c %s "$WORK/out") bytes, not $BYTES"
    else
        grep -q "^$BYTES bytes" "$WORK/out" || die "$name: $(cat "$WORK/out")"
    fi
    printf '%-22s %7.2f s  %8.1f MiB/s  peak RSS %6.1f MiB\n' "$name" "$wall" \
        "$(awk -v b="$BYTES" -v s="$wall" 'BEGIN { print b / s / 1048576 }')" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
    WALL[$name]+="$wall "
}
run_drp() { measure drp "$SSH_STREAM" "$USER_NAME@127.0.0.1:$PORT" "$WORK/id" "$WORK/known_hosts" "cat $DATA"; }
run_ssh_default() { measure ssh "${SSH[@]}" cat "$DATA"; }
run_ssh_same() { measure "ssh -c $DRP_CIPHER" "${SSH[@]}" -c "$DRP_CIPHER" cat "$DATA"; }

for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then
        run_drp; run_ssh_default; run_ssh_same
    else
        run_ssh_same; run_ssh_default; run_drp
    fi
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
DRP_MED=$(median <<<"${WALL[drp]}")
SSH_MED=$(median <<<"${WALL[ssh]}")
SAME_MED=$(median <<<"${WALL["ssh -c $DRP_CIPHER"]}")
echo
echo "median wall: drp $DRP_MED s, ssh $SSH_MED s, ssh -c $DRP_CIPHER $SAME_MED s"
awk -v d="$DRP_MED" -v s="$SSH_MED" -v c="$SAME_MED" -v cipher="$DRP_CIPHER" 'BEGIN {
    printf "throughput drp / ssh HOST cat:              %.2fx (goal >= 0.80x)\n", s / d
    printf "throughput drp / ssh -c %s HOST cat: %.2fx\n", cipher, c / d
}'
