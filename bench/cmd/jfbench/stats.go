// SPDX-License-Identifier: Apache-2.0

package main

import (
	"math"
	"sort"
)

// Summary describes a sample set. Benchmarks never report a single run: every number in the
// table is a median with its spread, so a noisy neighbour on this 2-core machine shows up as a
// wide p5..p95 rather than as a misleading point value.
type Summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	P5     float64 `json:"p5"`
	P25    float64 `json:"p25"`
	Median float64 `json:"median"`
	P75    float64 `json:"p75"`
	P95    float64 `json:"p95"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// summarize computes order statistics with linear interpolation between closest ranks
// (the same definition as numpy's default), so small samples still give stable percentiles.
func summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return Summary{
		N:      len(s),
		Min:    s[0],
		P5:     quantile(s, 0.05),
		P25:    quantile(s, 0.25),
		Median: quantile(s, 0.50),
		P75:    quantile(s, 0.75),
		P95:    quantile(s, 0.95),
		Max:    s[len(s)-1],
		Mean:   sum / float64(len(s)),
	}
}

// quantile expects sorted input.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return sorted[lo]*(1-frac) + sorted[hi]*frac
}
