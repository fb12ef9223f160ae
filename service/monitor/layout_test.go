// SPDX-License-Identifier: Apache-2.0

package monitor

import "reflect"

func sizeOf(v any) uintptr { return reflect.TypeOf(v).Size() }

func fieldOffsets(v any) []uintptr {
	t := reflect.TypeOf(v)
	offs := make([]uintptr, t.NumField())
	for i := range offs {
		offs[i] = t.Field(i).Offset
	}
	return offs
}
