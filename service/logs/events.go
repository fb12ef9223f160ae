// SPDX-License-Identifier: Apache-2.0

// Package logs carries container output and lifecycle events to their two destinations: a
// size-capped per-container log file that backs `jackfruit logs` (always), and
// systemd-journald with per-container fields (when journald runs).
//
// See docs/logging.md for the design, the journal fields, the MESSAGE_IDs and the log file
// format.
package logs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackfruit/jackfruit/service"
)

// Fields identify a container in the journal.
type Fields struct {
	Name string // container name: CONTAINER=, CONTAINER_NAME=, SYSLOG_IDENTIFIER=
	ID   string // 64 lowercase hex digits: CONTAINER_ID_FULL=, CONTAINER_ID= (first 12)
}

// Validate reports fields that would corrupt or mislabel journal entries.
func (f Fields) Validate() error {
	if f.Name == "" {
		return service.Errorf(service.KindInvalidArgument, "log fields: empty container name")
	}
	if strings.ContainsAny(f.Name, "\n\x00") {
		return service.Errorf(service.KindInvalidArgument, "log fields: container name %q contains a newline or NUL", f.Name)
	}
	if len(f.ID) != 64 {
		return service.Errorf(service.KindInvalidArgument, "log fields: container ID %q is not 64 hex digits", f.ID)
	}
	for i := 0; i < len(f.ID); i++ {
		c := f.ID[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return service.Errorf(service.KindInvalidArgument, "log fields: container ID %q is not 64 lowercase hex digits", f.ID)
		}
	}
	return nil
}

// MESSAGE_IDs of the entries jackfruit writes about containers; units/jackfruit.catalog
// explains each for `journalctl -x`. They never change: users filter on them.
const (
	MessageContainerStarted = "9048805d5b284d8dbe237e2161c8cbe6"
	MessageContainerExited  = "c5eb5a5e3d044235ba9407ecff6c2e74"
	MessageSoftLimit        = "59d0b9852ee649eda0b6f951687171f2"
	MessageHardLimit        = "eec714b8053645d4a3a81f09bd2db01c"
	MessageContainerRemoved = "1c9bf7fbefdf493a8ea5e0affe6ea0cd"
	MessageJournalDropped   = "ff0a44a4b59b42e59cb1696b884d8cae"
)

// priorityNoticeForFailure is LOG_NOTICE: a container ended badly, the host is fine.
const priorityNoticeForFailure = '5'

// Event writes a lifecycle or memory event as a journal entry with the container's fields, a
// fixed MESSAGE_ID and structured fields (see docs/logging.md). Events that are not worth a
// journal entry (service.EventChanged: RSS samples, state "stopping") are ignored.
func (j *Journal) Event(f Fields, ev service.Event) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b := j.getBuf()
	e, ok := appendEvent((*b)[:0], f, ev)
	if !ok {
		j.putBuf(b, e)
		return nil
	}
	err := j.send(e, 1)
	j.putBuf(b, e)
	return err
}

// appendEvent encodes ev; ok is false for event types that are not journaled.
func appendEvent(b []byte, f Fields, ev service.Event) (_ []byte, ok bool) {
	c := ev.Container
	u := strconv.FormatUint
	var (
		prio  byte = '6'
		id    string
		msg   string
		extra [][2]string
	)
	switch ev.Type {
	case service.EventStarted:
		id = MessageContainerStarted
		msg = fmt.Sprintf("Container %s started (pid %d): %s", f.Name, c.Pid, strings.Join(c.Command, " "))
		extra = [][2]string{
			{"CONTAINER_PID", strconv.Itoa(c.Pid)},
			{"CONTAINER_COMMAND", strings.Join(c.Command, " ")},
			{"CONTAINER_ROOTFS", c.Rootfs},
			{"SOFT_LIMIT", u(c.SoftLimit, 10)},
			{"HARD_LIMIT", u(c.HardLimit, 10)},
			{"LIMITS_ENFORCED", strconv.FormatBool(c.LimitsEnforced)},
		}
	case service.EventExited:
		id = MessageContainerExited
		switch c.State {
		case service.StateKilled:
			prio = priorityNoticeForFailure
			msg = fmt.Sprintf("Container %s was killed by signal %s", f.Name, c.Signal)
		case service.StateOOMKill:
			prio = '3'
			msg = fmt.Sprintf("Container %s was killed at its hard memory limit (%d bytes)", f.Name, c.HardLimit)
		default:
			if c.ExitCode != 0 {
				prio = priorityNoticeForFailure
			}
			msg = fmt.Sprintf("Container %s exited with code %d", f.Name, c.ExitCode)
		}
		extra = [][2]string{
			{"CONTAINER_STATE", string(c.State)},
			{"EXIT_CODE", strconv.Itoa(c.ExitCode)},
			{"PEAK_RSS", u(c.PeakRSS, 10)},
		}
		if c.Signal != "" {
			extra = append(extra, [2]string{"SIGNAL", c.Signal})
		}
	case service.EventSoftLimit:
		id, prio = MessageSoftLimit, '4'
		msg = fmt.Sprintf("Container %s exceeded its soft memory limit: RSS %d bytes > limit %d bytes", f.Name, ev.RSS, ev.Limit)
		extra = [][2]string{{"RSS", u(ev.RSS, 10)}, {"LIMIT", u(ev.Limit, 10)}}
	case service.EventHardLimit:
		id, prio = MessageHardLimit, '3'
		msg = fmt.Sprintf("Container %s reached its hard memory limit and was killed: RSS %d bytes > limit %d bytes", f.Name, ev.RSS, ev.Limit)
		extra = [][2]string{{"RSS", u(ev.RSS, 10)}, {"LIMIT", u(ev.Limit, 10)}}
	case service.EventRemoved:
		id = MessageContainerRemoved
		msg = fmt.Sprintf("Container %s removed", f.Name)
	default:
		return b, false
	}
	if c.EnforcedBy != "" && ev.Type != service.EventRemoved {
		// The entries are the same whichever enforces the limits; this says which.
		extra = append(extra, [2]string{"ENFORCED_BY", c.EnforcedBy})
	}
	// The same SYSLOG_IDENTIFIER as the container's output lines: the issue asks for "the same
	// container fields", and `journalctl -t NAME` then shows the output framed by its start
	// and exit. The entries remain the supervisor's (_PID, _SYSTEMD_UNIT=jackfruit.service).
	b = appendContainerFields(b, f, prio, f.Name)
	b = appendField(b, "MESSAGE_ID", id)
	b = appendField(b, "JACKFRUIT_EVENT", string(ev.Type))
	for _, kv := range extra {
		b = appendField(b, kv[0], kv[1])
	}
	return appendField(b, "MESSAGE", msg), true
}
