// SPDX-License-Identifier: Apache-2.0

package sdunit

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/service/runtime/seccomp"
)

// unitSection returns the settings of one "# --- NAME" section of units/jackfruit.service.
func unitSection(t *testing.T, name string) []directive {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "units", "jackfruit.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []directive
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "# --- "):
			in = strings.HasPrefix(line, "# --- "+name+" ")
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
		out = append(out, directive{k, v})
	}
	if len(out) == 0 {
		t.Fatalf("no %q section found in units/jackfruit.service", name)
	}
	return out
}

// TestHardeningMatchesUnitFile: a container's unit carries every restriction of
// jackfruit.service's hardening section, value for value, and nothing else; only the
// kernel monitor's device (the supervisor's, not a container's) is left out.
func TestHardeningMatchesUnitFile(t *testing.T) {
	var file []directive
	for _, d := range unitSection(t, "Hardening") {
		if d.key == "DeviceAllow" && strings.HasPrefix(d.value, "/dev/container_monitor ") {
			continue
		}
		file = append(file, d)
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

// TestFloorMatchesUnitFile: the filter a container in a unit of its own gets from its setup
// stage (seccomp.Floor) is built from exactly jackfruit.service's system-call section.
func TestFloorMatchesUnitFile(t *testing.T) {
	file := unitSection(t, "System calls")
	if len(file) != len(seccomp.FloorDirectives) {
		t.Errorf("jackfruit.service has %d system-call settings, the floor %d", len(file), len(seccomp.FloorDirectives))
	}
	for i := range min(len(file), len(seccomp.FloorDirectives)) {
		if f := seccomp.FloorDirectives[i]; file[i].key != f.Key || file[i].value != f.Value {
			t.Errorf("setting %d: jackfruit.service %s=%s, floor %s=%s", i, file[i].key, file[i].value, f.Key, f.Value)
		}
	}
}

func TestUnitName(t *testing.T) {
	if got := UnitName("hog"); got != "jackfruit-hog.service" {
		t.Fatalf("UnitName = %q", got)
	}
}
