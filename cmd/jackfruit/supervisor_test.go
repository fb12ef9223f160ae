// SPDX-License-Identifier: Apache-2.0

package main

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]int64{"1048576": 1 << 20, "512K": 512 << 10, "16M": 16 << 20, "16MiB": 16 << 20, "1G": 1 << 30, " 2m ": 2 << 20}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1M", "M", "1T", "1.5M", "99999999999999999G"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}
