// SPDX-License-Identifier: Apache-2.0

package seccomp

import "fmt"

// The supervisor compiles the filter once for a container's capability set
// and passes the bytes to the setup stage, which decodes and installs them
// after its last privileged step and before it drops capabilities and execs.
func ExampleDefault() {
	f, err := Default([]string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
		"SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"})
	if err != nil {
		fmt.Println(err)
		return
	}
	blob := f.Marshal() // to the setup stage

	// In the setup stage (then g.Install()):
	g, err := Unmarshal(blob)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(g.Len() == f.Len())
	// Output: true
}
