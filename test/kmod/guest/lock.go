// SPDX-License-Identifier: Apache-2.0

package main

import "runtime"

func runtimeLockOSThread() { runtime.LockOSThread() }
