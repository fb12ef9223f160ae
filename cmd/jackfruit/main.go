// SPDX-License-Identifier: Apache-2.0

// Command jackfruit is the container supervisor (`jackfruit supervisor`) and its command-line
// client (every other verb), which talks to the supervisor over the control socket.
package main

import (
	"os"

	"github.com/jackfruit/jackfruit/service/runtime"
)

func main() {
	// The same binary is re-executed as each container's setup stage; there Init sets up the
	// container and execs the user's command, never returning.
	runtime.Init()
	os.Exit(execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
