package main

import "runtime"

func runtimeLockOSThread() { runtime.LockOSThread() }
