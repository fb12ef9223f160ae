// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// tablePadding is the space between the ps table's columns.
const tablePadding = 3

// tableColumn is one column of a table that may have to fit a terminal.
type tableColumn struct {
	header string
	// short replaces header when the table is too wide ("" keeps header).
	short string
	cells []string
	// shrink > 0 marks a column whose cells may be shortened (with "…"), down to min
	// characters; lower numbers are shortened first.
	shrink, min int
	// drop > 0 marks a column that may be left out when shortening is not enough; lower
	// numbers go first.
	drop int
	// width is the column's width once fitted (0: natural width, nothing shortened).
	width int
}

// naturalWidth is the width of the column's widest cell or header.
func (c tableColumn) naturalWidth() int {
	w := utf8.RuneCountInString(c.header)
	for _, s := range c.cells {
		w = max(w, utf8.RuneCountInString(s))
	}
	return w
}

// fitColumns makes the table at most width characters wide, as podman-like tables do on a
// terminal: first short headers, then the shrinkable columns are shortened (lowest shrink
// first) down to their minimum, then droppable columns are left out (lowest drop first),
// giving what they free back to the shortened columns. A table that cannot fit even then
// is returned at its narrowest; the terminal wraps it.
func fitColumns(cols []tableColumn, width, padding int) []tableColumn {
	fit := func(cols []tableColumn) ([]tableColumn, bool) {
		out := make([]tableColumn, len(cols))
		copy(out, cols)
		total := padding * (len(out) - 1)
		for n := range out {
			out[n].width = out[n].naturalWidth()
			total += out[n].width
		}
		if total <= width {
			return out, true
		}
		for n := range out {
			if out[n].short != "" {
				out[n].header = out[n].short
				w := out[n].naturalWidth()
				total -= out[n].width - w
				out[n].width = w
			}
		}
		for _, n := range ordered(out, func(c tableColumn) int { return c.shrink }) {
			if total <= width {
				break
			}
			floor := max(out[n].min, utf8.RuneCountInString(out[n].header))
			cut := min(total-width, out[n].width-floor)
			if cut > 0 {
				out[n].width -= cut
				total -= cut
			}
		}
		return out, total <= width
	}
	var drops []string
	for _, n := range ordered(cols, func(c tableColumn) int { return c.drop }) {
		drops = append(drops, cols[n].header)
	}
	out, ok := fit(cols)
	for _, header := range drops {
		if ok {
			break
		}
		kept := make([]tableColumn, 0, len(cols))
		for _, c := range cols {
			if c.header != header {
				kept = append(kept, c)
			}
		}
		cols = kept
		out, ok = fit(cols)
	}
	return out
}

// ordered returns the indices of the columns whose key is > 0, lowest key first.
func ordered(cols []tableColumn, key func(tableColumn) int) []int {
	var idx []int
	for k := 1; k <= len(cols); k++ {
		for n, c := range cols {
			if key(c) == k {
				idx = append(idx, n)
			}
		}
	}
	return idx
}

// truncate shortens s to at most n characters, marking the cut with "…". n <= 0 keeps s.
func truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// terminalWidth is the width of the terminal w writes to, or 0 when w is not a terminal
// (a pipe or a file: the table is then printed at its full width).
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
