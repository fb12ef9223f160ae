// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"strings"

	"github.com/godbus/dbus/v5"
)

const hexDigits = "0123456789abcdef"

// EscapeLabel escapes s for use as one element of an object path exactly like systemd's
// bus_label_escape (sd_bus_path_encode): every byte outside [A-Za-z0-9], and a leading digit,
// becomes _xx in lowercase hex; the empty string becomes "_". Using systemd's scheme means
// tools and people who know machined's paths can predict ours.
func EscapeLabel(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		digit := c >= '0' && c <= '9'
		if alpha || (digit && i > 0) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// UnescapeLabel reverses EscapeLabel. It accepts only the canonical form EscapeLabel
// produces, so that exactly one object path names each container.
func UnescapeLabel(label string) (string, bool) {
	if label == "_" {
		return "", true
	}
	if label == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(label) {
			return "", false
		}
		hi, lo := unhex(label[i+1]), unhex(label[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	name := b.String()
	if EscapeLabel(name) != label {
		return "", false
	}
	return name, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ContainerPath is the object path of the container called name.
func ContainerPath(name string) dbus.ObjectPath {
	return dbus.ObjectPath(ContainerPathPrefix + "/" + EscapeLabel(name))
}

// containerName extracts the container name from a path below ContainerPathPrefix; ok is
// false for the prefix itself, deeper paths and non-canonical labels.
func containerName(p dbus.ObjectPath) (string, bool) {
	rest, found := strings.CutPrefix(string(p), ContainerPathPrefix+"/")
	if !found || strings.Contains(rest, "/") {
		return "", false
	}
	return UnescapeLabel(rest)
}
