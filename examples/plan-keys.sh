#!/usr/bin/env bash
# Generates the OpenPGP keys that examples/plan.toml names, so that
# `drp plan check examples/plan.toml` passes:
#
#   keys/acme.{pub,sec}.asc     customer ACME (secret key protected by $ACME_KEY_PASSPHRASE)
#   keys/globex.{pub,sec}.asc   customer Globex
#   keys/ops.{pub,sec}.asc      the ops key that signs manifests
#
# Usage: examples/plan-keys.sh [DIR]   (default: examples/keys; existing keys are kept)
# Uses the `drp` on PATH, or $DRP.
set -euo pipefail

drp=${DRP:-drp}
dir=${1:-"$(dirname "${BASH_SOURCE[0]}")/keys"}
# Example keys only: a real passphrase comes from your secret store.
export ACME_KEY_PASSPHRASE=${ACME_KEY_PASSPHRASE:-example passphrase}

generate() {
    local name=$1
    shift
    if [[ -e "$dir/$name.pub.asc" ]]; then
        echo "keep    $dir/$name.pub.asc"
    else
        "$drp" keys generate --name "$name" --dir "$dir" "$@"
    fi
}

generate acme --passphrase-env ACME_KEY_PASSPHRASE
generate globex
generate ops
