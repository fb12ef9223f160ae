// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// TestPropertiesDocumented: every property the objects serve has its row in docs/dbus.md with
// the right type signature, and the docs name no property that is not served: a property added
// to props.go cannot go undocumented.
func TestPropertiesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/dbus.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\| `([a-z{}()]+)` \\|")
	// The manager's table comes first, the container's second.
	sections := strings.Split(doc, "### Properties (read-only)")
	if len(sections) != 3 {
		t.Fatalf("docs/dbus.md: want 2 \"Properties (read-only)\" sections (manager, container), found %d", len(sections)-1)
	}
	for i, c := range []struct {
		what  string
		props map[string]string
	}{
		{"manager", signatures(managerProps(service.Status{}))},
		{"container", signatures(containerProps(service.ContainerInfo{}))},
	} {
		table := sections[i+1]
		if end := strings.Index(table, "\n#"); end >= 0 {
			table = table[:end]
		}
		documented := map[string]string{}
		for _, m := range row.FindAllStringSubmatch(table, -1) {
			documented[m[1]] = m[2]
		}
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for k := range c.props {
				if !yield(k) {
					return
				}
			}
		}) {
			sig, ok := documented[name]
			switch {
			case !ok:
				t.Errorf("docs/dbus.md: the %s property %s (%s) has no row in its Properties table", c.what, name, c.props[name])
			case sig != c.props[name]:
				t.Errorf("docs/dbus.md: the %s property %s is documented as %s, served as %s", c.what, name, sig, c.props[name])
			}
		}
		for name := range documented {
			if _, ok := c.props[name]; !ok {
				t.Errorf("docs/dbus.md documents a %s property %s that is not served", c.what, name)
			}
		}
	}
}

func signatures(props map[string]dbus.Variant) map[string]string {
	out := make(map[string]string, len(props))
	for k, v := range props {
		out[k] = v.Signature().String()
	}
	return out
}
