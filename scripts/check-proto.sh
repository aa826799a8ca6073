#!/bin/sh
# The contracts must lint clean and the committed generated code must be exactly what
# `buf generate` produces from them.
set -eu
npx buf lint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r "$tmp/libs/contracts" libs/contracts >/dev/null; then
  echo "libs/contracts is out of date with proto/: run 'npx buf generate' and commit the result" >&2
  diff -r "$tmp/libs/contracts" libs/contracts | head -20 >&2
  exit 1
fi
echo "proto: lint clean, generated code up to date"
