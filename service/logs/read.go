// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// Read delivers the selected lines of this container's log (path.1, then path) to fn, in
// file order (which keeps each stream's order).
//
// Read returns pieces, not re-joined lines: a line longer than MaxLinePiece arrives as several
// LogLines, all but the last with Partial set, exactly as stored. Printing each piece's Data
// and a newline only after a piece that is neither Partial nor NoNewline (the stream's last
// line, printed without one) reproduces the output byte for byte, without
// holding a line of unbounded length in memory; JoinPartial re-joins for callers that want
// whole lines. The selection works on whole lines, though, so a line is delivered entirely or
// not at all:
//
//   - Since keeps a line when its first piece was read at or after Since, Until when it was
//     read before Until;
//   - Tail N keeps the last N lines (counted by their ends, across both streams; a line still
//     being written counts as the newest), with all their pieces; Tail counts among the lines
//     Since and Until keep.
//
// With o.Follow, Read then keeps delivering new lines as they are written, across rotations,
// until Close was called and everything is delivered, the clock reaches o.Until (what was
// written by then is delivered; nil is returned), ctx ends (ctx.Err() is returned) or fn
// returns an error (returned as is). A follower slower than two whole rotations loses the
// lines of the files rotated away meanwhile. LogLine.Data is fn's to keep.
func (c *ContainerLog) Read(ctx context.Context, o service.LogOptions, fn func(service.LogLine) error) error {
	c.mu.Lock()
	old, err := os.Open(c.path + ".1")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.mu.Unlock()
		return fmt.Errorf("opening container log: %w", err)
	}
	cur, err := os.Open(c.path)
	gen, size := c.gen, c.size
	c.mu.Unlock()
	if old != nil {
		defer old.Close()
	}
	if err != nil {
		return fmt.Errorf("opening container log: %w", err)
	}
	defer func() { cur.Close() }()

	r := newLineReader(o, fn)
	srcs, err := sources(old, cur, size)
	if err != nil {
		return err
	}
	if err := r.history(ctx, srcs); err != nil {
		return err
	}
	if !o.Follow {
		return nil
	}
	off := size
	// untilC fires when the clock reaches o.Until: following ends there, after one more pass
	// over what was written by then (lines read before Until may still have been on their
	// way to the file).
	untilC, stop := o.UntilReached()
	defer stop()
	ended := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.mu.Lock()
		rotated := c.gen != gen
		limit, closed, wake := c.size, c.closed, c.notify
		c.mu.Unlock()
		if rotated {
			// The writer is done with this file: read it to its end, then go on with the
			// next generation, opened under the lock so that no rotation races the open.
			fi, err := cur.Stat()
			if err != nil {
				return fmt.Errorf("reading container log: %w", err)
			}
			if _, err := scanRecords(cur, off, fi.Size(), true, r.deliver); err != nil {
				return err
			}
			c.mu.Lock()
			next := c.path
			ng := c.gen
			if c.gen-gen > 1 {
				next, ng = c.path+".1", c.gen-1
			}
			nf, err := os.Open(next)
			c.mu.Unlock()
			if err != nil {
				return fmt.Errorf("following container log across rotation: %w", err)
			}
			cur.Close()
			cur, gen, off = nf, ng, headerLen
			continue
		}
		if off < limit {
			if off, err = scanRecords(cur, off, limit, true, r.deliver); err != nil {
				return err
			}
			if !ended {
				continue
			}
			// Past Until a single pass: a container writing as fast as this reads must
			// not keep the call going.
		}
		if closed || ended {
			return nil
		}
		select {
		case <-wake:
		case <-untilC:
			ended = true
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ReadFile reads the log at path (path.1, then path) without a live ContainerLog, for
// containers loaded from disk. Follow is ignored: nothing writes the file any more. Use
// ContainerLog.Read for a log that is being written.
func ReadFile(ctx context.Context, path string, o service.LogOptions, fn func(service.LogLine) error) error {
	old, err := os.Open(path + ".1")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("opening container log: %w", err)
	}
	if old != nil {
		defer old.Close()
	}
	cur, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening container log: %w", err)
	}
	defer cur.Close()
	fi, err := cur.Stat()
	if err != nil {
		return fmt.Errorf("opening container log: %w", err)
	}
	srcs, err := sources(old, cur, fi.Size())
	if err != nil {
		return err
	}
	return newLineReader(o, fn).history(ctx, srcs)
}

// source is a file and the byte range of whole records to read from it.
type source struct {
	f     *os.File
	limit int64
}

func sources(old, cur *os.File, curLimit int64) ([]source, error) {
	var srcs []source
	if old != nil {
		fi, err := old.Stat()
		if err != nil {
			return nil, fmt.Errorf("reading container log: %w", err)
		}
		if err := checkMagic(old); err != nil {
			return nil, err
		}
		srcs = append(srcs, source{old, fi.Size()})
	}
	if err := checkMagic(cur); err != nil {
		return nil, err
	}
	return append(srcs, source{cur, curLimit}), nil
}

// lineReader applies Since, Until and Tail to whole lines (see the comment at the top of this
// file) and hands the selected pieces to fn.
type lineReader struct {
	since int64
	until int64 // exclusive
	tail  int
	fn    func(service.LogLine) error
	ctx   context.Context

	// per stream: a line is open between its first piece and its final piece
	open     [2]bool
	selected [2]bool // the open line is selected
	seen     [2]int  // lines of the stream that passed Since and Until, so far (history pass 2)
	skip     [2]int  // with Tail: lines of the stream that passed Since and Until but are not in the tail
	// inHistory: Tail applies (it selects among the lines present when reading started)
	inHistory bool
}

func newLineReader(o service.LogOptions, fn func(service.LogLine) error) *lineReader {
	r := &lineReader{since: math.MinInt64, until: math.MaxInt64, fn: fn}
	if !o.Since.IsZero() {
		r.since = o.Since.UnixNano()
	}
	if !o.Until.IsZero() {
		r.until = o.Until.UnixNano()
	}
	if o.Tail > 0 {
		r.tail = o.Tail
	}
	return r
}

// inRange reports whether a line whose first piece was read at t (Unix ns) passes Since and
// Until.
func (r *lineReader) inRange(t int64) bool { return t >= r.since && t < r.until }

// history delivers the selected lines of srcs. With Tail, a first pass over the record
// headers finds, per stream, how many Since/Until-selected lines precede the last Tail ones.
func (r *lineReader) history(ctx context.Context, srcs []source) error {
	r.ctx = ctx
	if r.tail > 0 {
		if err := r.countTail(srcs); err != nil {
			return err
		}
	}
	r.inHistory = true
	for _, s := range srcs {
		if _, err := scanRecords(s.f, headerLen, s.limit, true, r.deliver); err != nil {
			return err
		}
	}
	// Lines still open continue in Follow mode with their selection.
	r.inHistory = false
	return nil
}

func (r *lineReader) countTail(srcs []source) error {
	// ring holds the stream of each of the last Tail selected line ends.
	ring := make([]uint8, 0, min(r.tail, 4096))
	head := 0
	push := func(s uint8) {
		if len(ring) < r.tail {
			ring = append(ring, s)
			return
		}
		ring[head] = s
		head = (head + 1) % r.tail
	}
	var (
		open, sel [2]bool
		total     [2]int
		lastIdx   [2]int
		idx       int
	)
	for _, s := range srcs {
		_, err := scanRecords(s.f, headerLen, s.limit, false, func(rec record, _ []byte) error {
			st := rec.stream
			if !open[st] {
				open[st], sel[st] = true, r.inRange(rec.time)
			}
			lastIdx[st] = idx
			idx++
			if !rec.partial {
				open[st] = false
				if sel[st] {
					total[st]++
					push(st)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Unfinished lines (being written right now) count as lines too, ordered by their
	// latest piece.
	order := []uint8{0, 1}
	if lastIdx[0] > lastIdx[1] {
		order = []uint8{1, 0}
	}
	for _, st := range order {
		if open[st] && sel[st] {
			total[st]++
			push(st)
		}
	}
	var keep [2]int
	for _, st := range ring {
		keep[st]++
	}
	r.skip = [2]int{total[0] - keep[0], total[1] - keep[1]}
	return nil
}

// deliver is the scanRecords callback for the delivering passes (history pass 2 and Follow).
func (r *lineReader) deliver(rec record, data []byte) error {
	st := rec.stream
	if !r.open[st] {
		r.open[st] = true
		sel := r.inRange(rec.time)
		if sel && r.inHistory && r.tail > 0 {
			sel = r.seen[st] >= r.skip[st]
			r.seen[st]++
		}
		r.selected[st] = sel
	}
	if !rec.partial {
		r.open[st] = false
	}
	if !r.selected[st] {
		return nil
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return r.fn(service.LogLine{
		Time:      time.Unix(0, rec.time),
		Stream:    rec.Stream(),
		Data:      append([]byte(nil), data...),
		Partial:   rec.partial,
		NoNewline: rec.noEOL,
	})
}

// JoinPartial wraps fn so that it receives whole lines: pieces of a line (per stream) are
// collected until the final one and delivered as one LogLine with the first piece's time.
// A line is never held beyond maxLen bytes: at that size the collected part is delivered,
// still marked Partial. maxLen <= 0 means no limit. Call the returned flush after the last
// line to deliver an unfinished line (possible after Tail or a lost rotation).
func JoinPartial(maxLen int, fn func(service.LogLine) error) (join func(service.LogLine) error, flush func() error) {
	var pending [2]*service.LogLine
	idx := func(s service.Stream) int {
		if s == service.Stderr {
			return 1
		}
		return 0
	}
	join = func(l service.LogLine) error {
		i := idx(l.Stream)
		p := pending[i]
		if p == nil {
			if !l.Partial {
				return fn(l)
			}
			cp := l
			cp.Data = append([]byte(nil), l.Data...)
			pending[i] = &cp
			return nil
		}
		p.Data = append(p.Data, l.Data...)
		p.Partial, p.NoNewline = l.Partial, l.NoNewline
		if !l.Partial || (maxLen > 0 && len(p.Data) >= maxLen) {
			pending[i] = nil
			return fn(*p)
		}
		return nil
	}
	flush = func() error {
		for i, p := range pending {
			if p != nil {
				pending[i] = nil
				if err := fn(*p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return join, flush
}
