// SPDX-License-Identifier: Apache-2.0

package main

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]int64{"1048576": 1 << 20, "512K": 512 << 10, "16M": 16 << 20, "16MiB": 16 << 20, "1G": 1 << 30, " 2m ": 2 << 20,
		// podman's spellings: any case, with "b" or "ib" after the unit, or "b" alone for bytes.
		"64m": 64 << 20, "64mb": 64 << 20, "64MB": 64 << 20, "64mib": 64 << 20, "1kib": 1 << 10, "100b": 100, "100B": 100, "3g": 3 << 30}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0m", "-1M", "M", "b", "mb", "1T", "1.5M", "99999999999999999G", "16ib", "16mi", "16 m", "+5", "1e3", "18446744073709551616"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	// parseBytes, under the memory flags, returns 0 for the caller to judge; the largest
	// byte count still fits, one more does not.
	for in, want := range map[string]uint64{"0": 0, "0m": 0, "0b": 0, "18446744073709551615": 1<<64 - 1, "17179869183g": 17179869183 << 30} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"17179869184g", "18446744073709551616", "x"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
