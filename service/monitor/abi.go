// SPDX-License-Identifier: Apache-2.0

// Package monitor is the user-space side of the container_monitor kernel
// module: a Go mirror of the ioctl ABI in kmod/monitor_ioctl.h and a Client
// for /dev/container_monitor.
//
// The ABI is defined once, in the C header; abi_test.go compiles a C program
// against that header and checks every constant, size and offset below.
package monitor

import "unsafe"

// ABI constants mirrored from kmod/monitor_ioctl.h.
const (
	ABIVersion = 1
	NameLen    = 64
	IocMagic   = 0xCE

	QuerySoftWarned = 1 << 0
	QueryKilled     = 1 << 1
	QueryExited     = 1 << 2
)

// VersionInfo mirrors struct cm_version (GET_VERSION).
type VersionInfo struct {
	ABIVersion uint32
	EventSize  uint32
	NameLen    uint32
	Reserved   uint32
}

// RegisterArgs mirrors struct cm_register (REGISTER).
type RegisterArgs struct {
	Pid       int32
	Flags     uint32
	SoftLimit uint64
	HardLimit uint64
	Name      [NameLen]byte
}

// UnregisterArgs mirrors struct cm_unregister (UNREGISTER).
type UnregisterArgs struct {
	Pid      int32
	Reserved uint32
}

// QueryArgs mirrors struct cm_query (QUERY).
type QueryArgs struct {
	Pid       int32
	Flags     uint32
	RSS       uint64
	SoftLimit uint64
	HardLimit uint64
	NrTasks   uint32
	Reserved  uint32
	Name      [NameLen]byte
}

// Stats mirrors struct cm_stats (STATS): module-wide counters.
type Stats struct {
	Entries        uint32 // registered containers
	MaxEntries     uint32 // module parameter max_entries
	ScanIntervalMs uint32 // module parameter scan_interval_ms
	EventsQueued   uint32 // events waiting to be read
	Scans          uint64 // scans since the module was loaded
	ScanNsTotal    uint64 // time spent scanning, ns
	LastScanNs     uint64 // duration of the latest scan, ns
	MaxScanNs      uint64 // longest scan, ns
	EventsDropped  uint64 // events dropped because the queue was full
	Kills          uint64 // hard-limit kills
}

// RawEvent mirrors struct cm_event, the record read() returns.
type RawEvent struct {
	Type   uint32
	Pid    int32
	Seq    uint64
	RSS    uint64
	Limit  uint64
	TimeNs uint64
	Name   [NameLen]byte
}

// Linux _IOC encoding (asm-generic/ioctl.h, used by x86 and arm64).
const (
	iocWrite     = 1
	iocRead      = 2
	iocNrShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | IocMagic<<iocTypeShift | nr<<iocNrShift | size<<iocSizeShift
}

// ioctl request numbers.
var (
	IocGetVersion = ioc(iocRead, 0, unsafe.Sizeof(VersionInfo{}))
	IocRegister   = ioc(iocWrite, 1, unsafe.Sizeof(RegisterArgs{}))
	IocUnregister = ioc(iocWrite, 2, unsafe.Sizeof(UnregisterArgs{}))
	IocQuery      = ioc(iocRead|iocWrite, 3, unsafe.Sizeof(QueryArgs{}))
	IocStats      = ioc(iocRead, 4, unsafe.Sizeof(Stats{}))
)

// EventSize is the size of one event record returned by read().
const EventSize = int(unsafe.Sizeof(RawEvent{}))
