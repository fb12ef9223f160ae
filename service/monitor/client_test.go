// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestOpenMissingDeviceIsUnavailable(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "container_monitor"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open(missing) = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "modprobe container_monitor") {
		t.Errorf("error %q does not tell how to load the module", err)
	}
}

func TestOpenWrongDeviceIsVersionMismatch(t *testing.T) {
	// /dev/null answers every ioctl with ENOTTY, like an unrelated device.
	_, err := Open("/dev/null")
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("Open(/dev/null) = %v, want ErrVersionMismatch", err)
	}
}

func TestValidName(t *testing.T) {
	good := []string{"hog", "a", "web-1", "db_2.prod", strings.Repeat("x", NameLen-1)}
	bad := []string{"", "-x", ".x", "a b", "a=b", "a/b", "é", strings.Repeat("x", NameLen)}
	for _, n := range good {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidName(n); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", n)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	r := RawEvent{Type: uint32(EventHard), Pid: 42, ID: 9, Seq: 7, RSS: 1 << 20, Limit: 2 << 20, TimeNs: 1_700_000_000_123_456_789, MonoNs: 5_000_000_000}
	copy(r.Name[:], "hog")
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), EventSize)
	ev, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Type: EventHard, ID: 9, Pid: 42, Name: "hog", RSS: 1 << 20, Limit: 2 << 20, Seq: 7,
		Time: time.Unix(0, 1_700_000_000_123_456_789), Mono: 5 * time.Second}
	if ev != want {
		t.Fatalf("DecodeEvent = %+v, want %+v", ev, want)
	}
	if ev.Type.String() != "hard-limit" {
		t.Errorf("String() = %q", ev.Type.String())
	}
	if _, err := DecodeEvent(b[:EventSize-1]); err == nil {
		t.Error("short record decoded without error")
	}
}
