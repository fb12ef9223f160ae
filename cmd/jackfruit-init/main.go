// SPDX-License-Identifier: Apache-2.0

// Command jackfruit-init is the container setup stage on its own: the program the supervisor
// executes in a new container's namespaces to mount its filesystems, confine it and exec its
// command (service/runtime, Init). It is the same code the jackfruit binary runs when it
// re-executes itself, in a binary a third the size with none of the CLI's and the
// supervisor's packages to initialise: it starts in about half the time, on every container
// start. The supervisor finds it next to its own binary (runtime.OpenStage). It also serves
// the spawn stage of a container's systemd unit (`jackfruit-init spawn NAME NETWORK`,
// runtime.SpawnMain), which systemd would otherwise start from the whole CLI binary.
package main

import (
	"fmt"
	"os"

	"github.com/jackfruit/jackfruit/service/runtime"
)

func main() {
	// In the setup stage (and the exec stage) Init never returns.
	runtime.Init()
	if len(os.Args) > 1 && os.Args[1] == runtime.SpawnVerb {
		if err := runtime.SpawnMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "jackfruit-init:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "jackfruit-init: the container setup stage; the jackfruit supervisor runs it, it does nothing on its own")
	os.Exit(2)
}
