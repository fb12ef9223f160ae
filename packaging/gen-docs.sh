#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Generates shell completions and manual pages from the jackfruit CLI itself (its hidden
# `gen-docs` command, built on cobra/doc, in the -tags gendocs build `make gendocs-bin` makes),
# so they never drift from the real commands/flags.
#   packaging/gen-docs.sh BINARY OUTDIR
# Produces OUTDIR/completions/{jackfruit.bash,_jackfruit,jackfruit.fish} and OUTDIR/man/*.1.
set -euo pipefail
bin=${1:?usage: gen-docs.sh BINARY OUTDIR}
out=${2:?usage: gen-docs.sh BINARY OUTDIR}
die() { echo "gen-docs.sh: $*" >&2; exit 1; }
[ -x "$bin" ] || die "$bin is not an executable (run 'make gendocs-bin')"

rm -rf "$out/completions" "$out/man"
"$bin" gen-docs --man "$out/man" --completions "$out/completions" ||
	die "'$bin gen-docs --man DIR --completions DIR' failed"
for f in completions/jackfruit.bash completions/_jackfruit completions/jackfruit.fish man/jackfruit.1; do
	[ -s "$out/$f" ] || die "$out/$f was not generated"
done
