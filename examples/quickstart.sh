#!/usr/bin/env bash
# drp's main job on the embedded default — a local directory as the object store, this
# machine as the host — with nothing to set up by hand:
#
#   1. generate a customer key (acme) and an ops signing key,
#   2. back up a sample stack (a directory and a "database dump" command) encrypted to acme,
#   3. list and verify the backup (signature, hashes, OpenPGP integrity),
#   4. restore it into an empty directory and compare it with the original,
#   5. restore the directory once more without drp: gpg --decrypt | zstd -d | tar -x.
#
# Usage: examples/quickstart.sh [WORKDIR]   (default: a new temporary directory, kept)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$(mktemp -d -t drp-quickstart.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "building drp (release)"
"$repo/.ci/install-deps" --build-only >/dev/null
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p drp-cli
drp="$repo/target/release/drp"
cd "$work"
store="file://$work/store"

step "generating keys in $work/keys"
"$drp" keys generate --name acme --dir keys
"$drp" keys generate --name ops --dir keys
"$drp" keys list --dir keys

step "making a sample stack in $work/stack"
mkdir -p stack/www
cp -r "$repo/drp-backup/src" stack/www/app
printf 'server { listen 8080; }\n' > stack/www/site.conf
dump='printf "CREATE TABLE customers (id int);\n"; seq 1 100000 | sed "s/^/INSERT INTO customers VALUES (/; s/$/);/"'

step "backing up (only the certificate is needed for this)"
snapshot=$("$drp" backup create --store "$store" --stack acme \
    --recipient keys/acme.pub.asc --sign-with keys/ops.sec.asc \
    www="$work/stack/www" "db=cmd:$dump")
echo "snapshot $snapshot"
"$drp" backup list --store "$store" --stack acme

step "verifying: signature, hashes, OpenPGP integrity, full decryption"
"$drp" backup verify --store "$store" --stack acme --key keys/acme.sec.asc --trust keys/ops.pub.asc

step "restoring into $work/restored"
"$drp" backup restore --store "$store" --stack acme --key keys/acme.sec.asc \
    --trust keys/ops.pub.asc --to restored
diff -r stack/www restored/www
sh -c "$dump" | cmp - restored/db
echo "restored data is identical to the original"

step "restoring without drp: gpg --decrypt | zstd -d | tar -x"
export GNUPGHOME="$work/gnupg"
mkdir -p -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null || true' EXIT
gpg --batch --quiet --import keys/acme.sec.asc
mkdir -p by-hand
gpg --batch --quiet --decrypt "store/acme/data/$snapshot/www.tar.zst.pgp" | zstd -dq | tar -x -C by-hand
diff -r stack/www by-hand
echo "GnuPG, zstd and tar alone restored the same files"

step "done: everything is in $work"
