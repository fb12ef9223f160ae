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
	ABIVersion = 2
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

// RegisterArgs mirrors struct cm_register (REGISTER). ID is set by the module.
type RegisterArgs struct {
	Pidfd     int32
	Flags     uint32
	SoftLimit uint64
	HardLimit uint64
	ID        uint64
	Reserved  uint64
	Name      [NameLen]byte
}

// UnregisterArgs mirrors struct cm_unregister (UNREGISTER).
type UnregisterArgs struct {
	ID       uint64
	Flags    uint32
	Reserved uint32
}

// QueryArgs mirrors struct cm_query (QUERY, and the records of QUERY_ALL).
type QueryArgs struct {
	ID        uint64
	Flags     uint32
	Pid       int32
	RSS       uint64
	SoftLimit uint64
	HardLimit uint64
	SampleNs  uint64
	NrTasks   uint32
	Reserved  uint32
	Name      [NameLen]byte
}

// QueryAllArgs mirrors struct cm_query_all (QUERY_ALL). Entries is the
// address of a []QueryArgs of Count elements.
type QueryAllArgs struct {
	Entries  uint64
	Count    uint32
	Total    uint32
	Flags    uint32
	Reserved uint32
}

// Stats mirrors struct cm_stats (STATS): counters of the module and of the
// open file that asks.
type Stats struct {
	Entries        uint32 // registered containers, all open files
	MaxEntries     uint32 // module parameter max_entries
	ScanIntervalMs uint32 // module parameter scan_interval_ms
	EventsQueued   uint32 // this file: events waiting to be read
	Scans          uint64 // scans since the module was loaded
	ScanNsTotal    uint64 // time spent scanning, ns
	LastScanNs     uint64 // duration of the latest scan, ns
	MaxScanNs      uint64 // longest scan, ns
	EventsDropped  uint64 // this file: events dropped because its queue was full
	Kills          uint64 // hard-limit kills
	FileEntries    uint32 // registered through this open file
	EventQueueLen  uint32 // module parameter event_queue_len (per open file)
	ScanPending    uint32 // 1 while a scan is queued
	Reserved       uint32
}

// RawEvent mirrors struct cm_event, the record read() returns.
type RawEvent struct {
	Type   uint32
	Pid    int32
	ID     uint64
	Seq    uint64
	RSS    uint64
	Limit  uint64
	TimeNs uint64
	MonoNs uint64
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
	IocRegister   = ioc(iocRead|iocWrite, 1, unsafe.Sizeof(RegisterArgs{}))
	IocUnregister = ioc(iocWrite, 2, unsafe.Sizeof(UnregisterArgs{}))
	IocQuery      = ioc(iocRead|iocWrite, 3, unsafe.Sizeof(QueryArgs{}))
	IocStats      = ioc(iocRead, 4, unsafe.Sizeof(Stats{}))
	IocQueryAll   = ioc(iocRead|iocWrite, 5, unsafe.Sizeof(QueryAllArgs{}))
)

// EventSize is the size of one event record returned by read().
const EventSize = int(unsafe.Sizeof(RawEvent{}))
