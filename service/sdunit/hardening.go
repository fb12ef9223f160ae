// SPDX-License-Identifier: Apache-2.0

package sdunit

import (
	"fmt"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service/runtime"
)

// directive is one unit file setting, as jackfruit.service spells it.
type directive struct{ key, value string }

// Hardening is every restriction of jackfruit.service's "Hardening" section, which a
// container started by the supervisor inherited while it was the supervisor's child. A
// container in a unit of its own gets them from that unit instead, so that moving out of the
// supervisor's cgroup loosens nothing that confines a process. TestHardeningMatchesUnitFile
// keeps the two lists equal; the only difference is the kernel monitor's device, which the
// supervisor needs and a container does not (its DeviceAllow= is left out here). Two sections
// of the unit file are not here. Its mount namespace (ProtectSystem= and the like): a
// container leaves the host's file systems behind in its setup stage. Its system-call
// restrictions: the setup stage installs them as one filter (seccomp.Floor), where systemd
// would compile and load one filter per setting at every start. Those two were most of a
// unit's start (units/jackfruit.service, docs/bench.md).
var Hardening = []directive{
	{"CapabilityBoundingSet", "CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_KILL CAP_SETUID CAP_SETGID CAP_SETPCAP CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_MKNOD CAP_SETFCAP CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_AUDIT_WRITE CAP_NET_ADMIN"},
	{"NoNewPrivileges", "yes"},
	{"DevicePolicy", "closed"},
	{"DeviceAllow", "char-pts rw"},
	{"UMask", "0022"},
}

// deviceRule is one DeviceAllow= entry, D-Bus (ss).
type deviceRule struct{ Path, Access string }

// hardeningProperties turns Hardening into the properties of a transient unit: the D-Bus
// types systemd's StartTransientUnit takes for each setting.
func hardeningProperties() ([]sddbus.Property, error) {
	props := make([]sddbus.Property, 0, len(Hardening))
	var devices []deviceRule
	for _, d := range Hardening {
		if d.key == "DeviceAllow" {
			// All entries go in one property: a second one would replace the first.
			path, access, ok := strings.Cut(d.value, " ")
			if !ok {
				return nil, fmt.Errorf("DeviceAllow=%s: want PATH ACCESS", d.value)
			}
			devices = append(devices, deviceRule{path, access})
			continue
		}
		p, err := property(d)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", d.key, d.value, err)
		}
		props = append(props, p)
	}
	if devices != nil {
		props = append(props, sddbus.Property{Name: "DeviceAllow", Value: godbus.MakeVariant(devices)})
	}
	return props, nil
}

func property(d directive) (sddbus.Property, error) {
	v := func(x any) sddbus.Property { return sddbus.Property{Name: d.key, Value: godbus.MakeVariant(x)} }
	switch d.key {
	case "NoNewPrivileges":
		if d.value != "yes" && d.value != "no" {
			return sddbus.Property{}, fmt.Errorf("want yes or no")
		}
		return v(d.value == "yes"), nil
	case "DevicePolicy":
		return v(d.value), nil
	case "CapabilityBoundingSet":
		var set uint64
		for _, n := range strings.Fields(d.value) {
			c, err := runtime.ParseCap(n)
			if err != nil {
				return sddbus.Property{}, err
			}
			set |= 1 << c
		}
		return v(set), nil
	case "UMask":
		m, err := strconv.ParseUint(d.value, 8, 32)
		if err != nil {
			return sddbus.Property{}, err
		}
		return v(uint32(m)), nil
	}
	return sddbus.Property{}, fmt.Errorf("no D-Bus form known for %s", d.key)
}
