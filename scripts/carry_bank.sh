#!/usr/bin/env bash
# Carry the source bank to the GPU machine in the same call as the repository and the wheels.
#
# A call carries 64 MiB in all; with every built-in source the bank (33.9 MB), the repository (31.5 MB) and the
# wheels (1.8 MB) are about 0.1 MB over.  Its index, bank.json, is repetitive text (450 kB) that gzip shrinks
# tenfold, so the carried copy keeps it gzipped and the GPU machine restores the bank as it was, byte for byte.
#
#   bash scripts/carry_bank.sh pack   [BANK]   here: BANK (default .bank) -> .bank_carry (bank.ogg linked, not copied)
#   bash scripts/carry_bank.sh unpack [BANK]   there: .bank_carry -> BANK, checked against the packed checksum
# The device call then carries [".whl", ".bank_carry"] and starts with `bash scripts/carry_bank.sh unpack &&`.
set -euo pipefail
mode=${1:-}
bank=${2:-.bank}
carry=.bank_carry
case "$mode" in
  pack)
    if [ ! -f "$bank/bank.json" ] || [ ! -f "$bank/bank.ogg" ]; then
      echo "carry_bank: $bank: no bank.json and bank.ogg (build it: audiomamba data bank --out $bank)" >&2
      exit 5
    fi
    rm -rf "$carry"
    mkdir -p "$carry"
    ln "$bank/bank.ogg" "$carry/bank.ogg" 2>/dev/null || cp "$bank/bank.ogg" "$carry/bank.ogg"
    gzip -9 -n -c "$bank/bank.json" > "$carry/bank.json.gz"
    (cd "$bank" && sha256sum bank.json bank.ogg) > "$carry/SHA256SUMS"
    du -cb "$carry"/* | tail -n 1 | awk -v d="$carry" '{printf "carry_bank: %s holds %.1f MB\n", d, $1 / 1e6}'
    ;;
  unpack)
    if [ ! -f "$carry/bank.json.gz" ] || [ ! -f "$carry/bank.ogg" ]; then
      echo "carry_bank: $carry: nothing to unpack (carry it)" >&2
      exit 5
    fi
    mkdir -p "$bank"
    if ! gunzip -c "$carry/bank.json.gz" > "$bank/bank.json.tmp"; then
      rm -f "$bank/bank.json.tmp"
      echo "carry_bank: $carry/bank.json.gz: damaged" >&2
      exit 5
    fi
    mv "$bank/bank.json.tmp" "$bank/bank.json"
    ln -f "$carry/bank.ogg" "$bank/bank.ogg" 2>/dev/null || cp "$carry/bank.ogg" "$bank/bank.ogg"
    if ! (cd "$bank" && sha256sum --quiet -c "$OLDPWD/$carry/SHA256SUMS"); then
      echo "carry_bank: $bank differs from the packed bank" >&2
      exit 5
    fi
    echo "carry_bank: $bank restored and checked"
    ;;
  *)
    echo "usage: bash scripts/carry_bank.sh pack|unpack [BANK]" >&2
    exit 2
    ;;
esac
