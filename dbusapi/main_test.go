// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"os"
	"testing"

	"github.com/jackfruit/jackfruit/service/runtime"
)

func TestMain(m *testing.M) {
	// The real supervisor's runtime re-executes this test binary as each container's setup
	// stage; Init turns that re-execution into the container and never returns there.
	runtime.Init()
	os.Exit(m.Run())
}
