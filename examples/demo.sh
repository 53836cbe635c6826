#!/usr/bin/env bash
# Builds drp (installing the build dependencies it needs, skipping those present), then runs
# `drp demo`: on this machine, without root or servers, sample customer stacks are backed up
# encrypted to their customers' keys, a drill freezes their services, drp detects it,
# recovers them onto "spare" hosts from the encrypted backups, reverts the fault, and
# prints the report. Arguments go to `drp demo` (e.g. --dir DIR).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/.ci/install-deps" --build-only >/dev/null
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p drp-cli
exec "$repo/target/release/drp" demo "$@"
