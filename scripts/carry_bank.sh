#!/usr/bin/env bash
# Carry the source bank to the GPU machine in the same call as the repository and the wheels, without its test
# split.
#
# A call carries 64 MiB in all; the bank (35.8 MB with every built-in source), the repository (31.5 MB) and the
# wheels (1.8 MB) are more.  The GPU machine trains and selects on validation, so its copy leaves the test
# split's stream out (5.5 MB; the test split is scored here, once, on the chosen model), and keeps the index,
# bank.json (repetitive text, 470 kB), gzipped tenfold.  The GPU machine restores the bank as it was, byte for
# byte, less test.ogg; asking it for the test split fails with one line naming the missing stream.
#
#   bash scripts/carry_bank.sh pack   [BANK]   here: BANK (default .bank) -> .bank_carry (streams linked, not copied)
#   bash scripts/carry_bank.sh unpack [BANK]   there: .bank_carry -> BANK, checked against the packed checksums
# The device call then carries [".whl", ".bank_carry"] and starts with `bash scripts/carry_bank.sh unpack &&`.
set -euo pipefail
mode=${1:-}
bank=${2:-.bank}
carry=.bank_carry
streams=(train.ogg validation.ogg)
case "$mode" in
  pack)
    for f in bank.json "${streams[@]}"; do
      if [ ! -f "$bank/$f" ]; then
        echo "carry_bank: $bank/$f: missing (build the bank, one stream per split: audiomamba data bank --out $bank)" >&2
        exit 5
      fi
    done
    rm -rf "$carry"
    mkdir -p "$carry"
    for f in "${streams[@]}"; do
      ln "$bank/$f" "$carry/$f" 2>/dev/null || cp "$bank/$f" "$carry/$f"
    done
    gzip -9 -n -c "$bank/bank.json" > "$carry/bank.json.gz"
    (cd "$bank" && sha256sum bank.json "${streams[@]}") > "$carry/SHA256SUMS"
    du -cb "$carry"/* | tail -n 1 | awk -v d="$carry" '{printf "carry_bank: %s holds %.1f MB\n", d, $1 / 1e6}'
    ;;
  unpack)
    for f in bank.json.gz SHA256SUMS "${streams[@]}"; do
      if [ ! -f "$carry/$f" ]; then
        echo "carry_bank: $carry/$f: missing (carry .bank_carry, made by pack)" >&2
        exit 5
      fi
    done
    mkdir -p "$bank"
    if ! gunzip -c "$carry/bank.json.gz" > "$bank/bank.json.tmp"; then
      rm -f "$bank/bank.json.tmp"
      echo "carry_bank: $carry/bank.json.gz: damaged" >&2
      exit 5
    fi
    mv "$bank/bank.json.tmp" "$bank/bank.json"
    for f in "${streams[@]}"; do
      ln -f "$carry/$f" "$bank/$f" 2>/dev/null || cp "$carry/$f" "$bank/$f"
    done
    rm -f "$bank/test.ogg" "$bank/bank.ogg"  # a stale stream would pair the new index with old audio
    if ! (cd "$bank" && sha256sum --quiet -c "$OLDPWD/$carry/SHA256SUMS"); then
      echo "carry_bank: $bank differs from the packed bank" >&2
      exit 5
    fi
    echo "carry_bank: $bank restored and checked (train and validation; the test split stays behind)"
    ;;
  *)
    echo "usage: bash scripts/carry_bank.sh pack|unpack [BANK]" >&2
    exit 2
    ;;
esac
