#!/usr/bin/env bash
# Generates shell completions and manual pages from the jackfruit CLI itself, so they never
# drift from the commands and flags the binary really has.
#   packaging/gen-docs.sh BINARY OUTDIR
# Produces OUTDIR/completions/{jackfruit.bash,_jackfruit,jackfruit.fish} and OUTDIR/man/*.1.
set -euo pipefail
bin=${1:?usage: gen-docs.sh BINARY OUTDIR}
out=${2:?usage: gen-docs.sh BINARY OUTDIR}
[ -x "$bin" ] || { echo "gen-docs.sh: $bin is not an executable (run 'make build')" >&2; exit 1; }

rm -rf "$out/completions" "$out/man"
mkdir -p "$out/completions" "$out/man"
# cobra's standard `completion` command.
"$bin" completion bash >"$out/completions/jackfruit.bash"
"$bin" completion zsh >"$out/completions/_jackfruit"
"$bin" completion fish >"$out/completions/jackfruit.fish"

# Manual pages: the CLI's hidden `gen-docs man DIR` (cobra/doc) writes one page per command.
if ! "$bin" gen-docs man "$out/man" >/dev/null; then
	echo "gen-docs.sh: '$bin gen-docs man DIR' failed; the CLI must provide it to build the manual pages" >&2
	exit 1
fi
ls "$out"/man/*.1 >/dev/null 2>&1 || { echo "gen-docs.sh: no manual pages were generated in $out/man" >&2; exit 1; }
