// SPDX-License-Identifier: Apache-2.0

package sdunit

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/coreos/go-systemd/v22/machine1"
	godbus "github.com/godbus/dbus/v5"
)

// ErrNoMachined means systemd-machined is not there (Debian: package systemd-container).
var ErrNoMachined = errors.New("systemd-machined is not available (Debian package systemd-container)")

// ErrLeaderGone means the container's init had already ended when machined looked for it (a
// short command): there is no machine to show, and nothing went wrong.
var ErrLeaderGone = errors.New("the container's init has already ended")

// machineService is the manager name machined shows for jackfruit's machines.
const machineService = "jackfruit"

// RegisterMachine registers the running container with systemd-machined, so machinectl
// list, status and terminate see it; machined finds its unit from leader, the container's
// init. id is the container id (hex; its first 16 bytes become the machine id). A failure
// is the caller's to report as a warning: the container runs without it.
func (m *Manager) RegisterMachine(name, id string, leader int, root string) error {
	mc, err := m.machined()
	if err != nil {
		return err
	}
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) < 16 {
		return fmt.Errorf("container id %q: want at least 32 hex digits", id)
	}
	if err := mc.RegisterMachine(name, raw[:16], machineService, "container", leader, root); err != nil {
		var de godbus.Error
		if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || de.Name == "org.freedesktop.systemd1.NoSuchUnit") {
			return fmt.Errorf("%w: %v", ErrNoMachined, err)
		}
		if errors.As(err, &de) && de.Name == "org.freedesktop.machine1.MachineExists" {
			return fmt.Errorf("machined already has a machine %q of another manager; machinectl does not show this container: %w", name, err)
		}
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.InvalidArgs" {
			return fmt.Errorf("machined refuses the name %q (machine names are host names: letters, digits, '-' and '.'); machinectl does not show this container: %w", name, err)
		}
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.UnixProcessIdUnknown" {
			return fmt.Errorf("registering machine %q: %w: %v", name, ErrLeaderGone, err)
		}
		if errors.As(err, &de) {
			// machined answered: another try on another connection gets the same answer.
			return fmt.Errorf("registering machine %q with machined: %w", name, err)
		}
		// The connection may be a dead one from before a restart of machined: once more.
		m.dropMachined()
		if mc, err2 := m.machined(); err2 == nil {
			if err2 = mc.RegisterMachine(name, raw[:16], machineService, "container", leader, root); err2 == nil {
				return nil
			}
		}
		return fmt.Errorf("registering machine %q with machined: %w", name, err)
	}
	return nil
}

// machined connects to systemd-machined; the reason it is absent is returned every time.
func (m *Manager) machined() (*machine1.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.machine != nil && m.machine.Connected() {
		return m.machine, nil
	}
	if m.machine != nil {
		m.machine.Close()
		m.machine = nil
	}
	mc, err := machine1.New()
	if err != nil {
		return nil, fmt.Errorf("connecting to machined: %w", err)
	}
	m.machine = mc
	return mc, nil
}

func (m *Manager) dropMachined() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.machine != nil {
		m.machine.Close()
		m.machine = nil
	}
}
