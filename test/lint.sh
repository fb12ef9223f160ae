#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Static checks for Go (gofmt, go vet, staticcheck) and the kernel module (checkpatch, sparse).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

unformatted=$(gofmt -l $(git ls-files '*.go') 2>&1 || true)
if [ -n "$unformatted" ]; then
	echo "lint: gofmt would change:"; echo "$unformatted"; fail=1
fi
# Licensing (README, packaging/debian/copyright): every source file names its license.
unlicensed=$(git ls-files '*.go' '*.sh' '*.c' '*.h' | xargs grep -L 'SPDX-License-Identifier' || true)
if [ -n "$unlicensed" ]; then
	echo "lint: no SPDX-License-Identifier line (Apache-2.0; GPL-2.0 under kmod/):"; echo "$unlicensed"; fail=1
fi
go vet ./... || fail=1
staticcheck=$(command -v staticcheck || echo "$(go env GOPATH)/bin/staticcheck")
"$staticcheck" ./... || fail=1

if [ -x kmod/check.sh ]; then
	kmod/check.sh || fail=1
fi

if [ "$fail" -ne 0 ]; then
	echo "lint: FAILED"
	exit 1
fi
echo "lint: ok"
