// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// StageName is the file name of the dedicated setup-stage binary (cmd/jackfruit-init): a
// small program whose main calls Init and nothing else.
const StageName = "jackfruit-init"

// setupProtocol numbers the setup config's format. The setup stage may be a separate binary
// (OpenStage), so the supervisor and the stage can come from different builds; a change to
// setupConfig that an older stage would misread must increase it. 2: Security.Floor, which an
// older stage would ignore, installing less than it was given. A stage takes configs of every
// protocol from minSetupProtocol on: those of 1 come from a supervisor that puts the floor's
// restrictions on the container's unit itself (a package upgrade's old supervisor, until it
// restarts).
const (
	setupProtocol    = 2
	minSetupProtocol = 1
)

// OpenStage opens the dedicated setup-stage binary that belongs to the running executable:
// StageName in the same directory (a build tree's bin/), else ../libexec/jackfruit/StageName
// (the package's /usr/bin/jackfruit and /usr/libexec/jackfruit/jackfruit-init). It returns
// nil and no error when there is none; Start then re-executes /proc/self/exe, which works as
// well, only slower (the whole CLI binary starts for every container).
//
// The caller keeps the file open for as long as it starts containers and passes it in
// Spec.Stage: containers are then started from this very file even after a package upgrade
// replaced it on disk, so the stage always matches the supervisor that opened it.
func OpenStage() (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating the setup stage: %w", err)
	}
	return openStageNear(self)
}

// StagePath is the path of the dedicated setup-stage binary OpenStage would open, or "" when
// there is none.
func StagePath() (string, error) {
	f, err := OpenStage()
	if f == nil {
		return "", err
	}
	defer f.Close()
	return f.Name(), nil
}

// openStageNear is OpenStage for the executable at self.
func openStageNear(self string) (*os.File, error) {
	dir := filepath.Dir(self)
	for _, p := range []string{
		filepath.Join(dir, StageName),
		filepath.Join(dir, "..", "libexec", "jackfruit", StageName),
	} {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening the setup stage: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("setup stage %s: %w", p, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			f.Close()
			return nil, fmt.Errorf("setup stage %s is not an executable file", p)
		}
		return f, nil
	}
	return nil, nil
}

// stagePath is what spawn executes: the opened stage binary through its descriptor (the
// child resolves /proc/self/fd/N before exec closes the close-on-exec descriptor), or the
// running binary itself.
func stagePath(stage *os.File) string {
	if stage == nil {
		// /proc/self/exe works even if the binary was replaced on disk (package upgrade).
		return "/proc/self/exe"
	}
	return "/proc/self/fd/" + strconv.Itoa(int(stage.Fd()))
}
