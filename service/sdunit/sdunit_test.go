// SPDX-License-Identifier: Apache-2.0

package sdunit

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHardeningMatchesUnitFile: a container's unit carries every restriction of
// jackfruit.service's hardening section, value for value, and nothing else; only the
// kernel monitor's device (the supervisor's, not a container's) is left out.
func TestHardeningMatchesUnitFile(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "units", "jackfruit.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var file []directive
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "# --- Hardening"):
			in = true
			continue
		case strings.HasPrefix(line, "["):
			in = false
		}
		if !in || line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unreadable line %q", line)
		}
		if k == "DeviceAllow" && strings.HasPrefix(v, "/dev/container_monitor ") {
			continue
		}
		file = append(file, directive{k, v})
	}
	if len(file) == 0 {
		t.Fatal("no hardening section found in units/jackfruit.service")
	}
	if len(file) != len(Hardening) {
		t.Errorf("jackfruit.service has %d hardening settings, the container unit %d", len(file), len(Hardening))
	}
	for i := range min(len(file), len(Hardening)) {
		if file[i] != Hardening[i] {
			t.Errorf("setting %d: jackfruit.service %s=%s, container unit %s=%s", i, file[i].key, file[i].value, Hardening[i].key, Hardening[i].value)
		}
	}
	props, err := hardeningProperties()
	if err != nil {
		t.Fatal(err)
	}
	// DeviceAllow entries become one property.
	if len(props) != len(Hardening) {
		t.Errorf("%d properties for %d settings", len(props), len(Hardening))
	}
}

func TestUnitName(t *testing.T) {
	if got := UnitName("hog"); got != "jackfruit-hog.service" {
		t.Fatalf("UnitName = %q", got)
	}
}
