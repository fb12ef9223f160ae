// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"github.com/godbus/dbus/v5"
	"testing"
	"testing/quick"
)

// Expected values follow systemd's bus_label_escape (src/basic/bus-label.c) and its tests.
func TestEscapeLabel(t *testing.T) {
	for in, want := range map[string]string{
		"":           "_",
		"hog":        "hog",
		"Hog2":       "Hog2",
		"1abc":       "_31abc",
		"web-1":      "web_2d1",
		"a.b_c":      "a_2eb_5fc",
		"foo bar":    "foo_20bar",
		"/":          "_2f",
		"\xff":       "_ff",
		"ö":          "_c3_b6",
		"0":          "_30",
		"x9-_.":      "x9_2d_5f_2e",
		"ABCXYZabcz": "ABCXYZabcz",
	} {
		if got := EscapeLabel(in); got != want {
			t.Errorf("EscapeLabel(%q) = %q, want %q", in, got, want)
		}
		back, ok := UnescapeLabel(want)
		if !ok || back != in {
			t.Errorf("UnescapeLabel(%q) = %q, %v; want %q", want, back, ok, in)
		}
	}
	if p := ContainerPath("web-1"); p != "/io/jackfruit/Jackfruit1/container/web_2d1" || !p.IsValid() {
		t.Errorf("ContainerPath(web-1) = %q", p)
	}
}

func TestUnescapeLabelRefusesNonCanonical(t *testing.T) {
	// Each would decode to some name, but is not what EscapeLabel produces for it, so a
	// container must not be reachable under it (one object, one path).
	for _, label := range []string{"", "_2", "_zz", "web_2D1", "_61bc", "a_", "1abc"} {
		if name, ok := UnescapeLabel(label); ok {
			t.Errorf("UnescapeLabel(%q) accepted, gave %q", label, name)
		}
	}
	for _, p := range []string{ContainerPathPrefix, ContainerPathPrefix + "/a/b", "/io/jackfruit/Jackfruit1/containers/a"} {
		if name, ok := containerName(dbusPath(p)); ok {
			t.Errorf("containerName(%q) accepted, gave %q", p, name)
		}
	}
}

func TestEscapeLabelRoundTrip(t *testing.T) {
	f := func(s string) bool {
		e := EscapeLabel(s)
		back, ok := UnescapeLabel(e)
		return ok && back == s && dbusPath(ContainerPathPrefix+"/"+e).IsValid()
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
}

func dbusPath(s string) dbus.ObjectPath { return dbus.ObjectPath(s) }
