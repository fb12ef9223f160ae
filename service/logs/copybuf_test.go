// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/service"
)

// scriptedReader returns at most limits[i % len(limits)] bytes on its i-th Read and records
// the size of the buffer each Read was given.
type scriptedReader struct {
	r      io.Reader
	limits []int
	calls  int
	sizes  []int
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	s.sizes = append(s.sizes, len(p))
	lim := s.limits[s.calls%len(s.limits)]
	s.calls++
	if len(p) > lim {
		p = p[:lim]
	}
	return s.r.Read(p)
}

// randomOutput is lines of random lengths (empty, short, around the small buffer, around and
// well over MaxLinePiece), optionally ending without a newline.
func randomOutput(rng *rand.Rand, lines int, noEOL bool) string {
	lengths := []int{0, 1, 42, idleChunk/2 - 1, idleChunk / 2, idleChunk/2 + 1, idleChunk - 1, idleChunk,
		idleChunk + 1, MaxLinePiece - 1, MaxLinePiece, MaxLinePiece + 1, 3*MaxLinePiece + 17, readChunk + 5}
	var b strings.Builder
	for i := 0; i < lines; i++ {
		n := lengths[rng.IntN(len(lengths))]
		if rng.IntN(3) == 0 {
			n = rng.IntN(200)
		}
		for k := 0; k < n; k++ {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		if i < lines-1 || !noEOL {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestCopyAcrossBufferSwitches feeds output through reads of many sizes, so Copy switches
// between its small and its borrowed big buffer with unfinished lines of every length in
// flight, and checks that the pieces reproduce the output exactly and are cut as documented.
func TestCopyAcrossBufferSwitches(t *testing.T) {
	patterns := [][]int{
		{1 << 30},                 // whatever fits: full reads, big buffer throughout
		{idleChunk},               // exactly the small buffer: always "full"
		{idleChunk - 1, 1 << 30},  // short then full, alternating
		{100, 5000, 1 << 30, 7},   // mixed
		{idleChunk/2 + 1, 70000},  // leftovers just over half the small buffer
		{1, 2, 3, 4096, 20000, 5}, // tiny reads between large ones
	}
	for pi, lim := range patterns {
		for seed := uint64(1); seed <= 3; seed++ {
			rng := rand.New(rand.NewPCG(seed, uint64(pi)))
			input := randomOutput(rng, 300, seed%2 == 0)
			c, _ := openLog(t, 64<<20, testFields(t), nil)
			if err := c.Copy(&scriptedReader{r: strings.NewReader(input), limits: lim}, service.Stdout); err != nil {
				t.Fatal(err)
			}
			c.Close()
			pieces := readAll(t, c, service.LogOptions{})
			if got := printed(pieces)[service.Stdout]; got != input {
				t.Fatalf("pattern %d seed %d: output not reproduced (%d bytes, want %d)", pi, seed, len(got), len(input))
			}
			for i, p := range pieces {
				if len(p.Data) > MaxLinePiece || (p.Partial && len(p.Data) != MaxLinePiece) {
					t.Fatalf("pattern %d seed %d: piece %d has %d bytes, partial %v", pi, seed, i, len(p.Data), p.Partial)
				}
				if p.NoNewline && i != len(pieces)-1 {
					t.Fatalf("pattern %d seed %d: piece %d marked no-newline but is not the last", pi, seed, i)
				}
			}
		}
	}
}

// TestQuietStreamHoldsOnlySmallBuffer checks the memory policy: Copy waits for output with
// the small buffer, switches to the big one after a read filled the small one, and gives it
// back after a read that came back short.
func TestQuietStreamHoldsOnlySmallBuffer(t *testing.T) {
	input := "hi\n" + strings.Repeat("x", 3*idleChunk) + "\n" + "bye\n"
	parts := []string{input[:3], input[3 : 3+idleChunk], input[3+idleChunk : len(input)-4], input[len(input)-4:]}
	sr := &scriptedReader{r: &oneShotReader{parts: parts}, limits: []int{1 << 30}}
	c, _ := openLog(t, 0, testFields(t), nil)
	if err := c.Copy(sr, service.Stdout); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Reads: "hi\n" (short, small buffer) -> idleChunk x's (fills the small buffer) -> the
	// rest of the long line (big buffer, short) -> "bye\n" (small again) -> EOF (small).
	want := []int{idleChunk, idleChunk, readChunk + MaxLinePiece - idleChunk, idleChunk, idleChunk}
	if len(sr.sizes) != len(want) {
		t.Fatalf("read buffer sizes %v, want %v", sr.sizes, want)
	}
	for i := range want {
		if sr.sizes[i] != want[i] {
			t.Fatalf("read buffer sizes %v, want %v", sr.sizes, want)
		}
	}
	if got := printed(readAll(t, c, service.LogOptions{}))[service.Stdout]; got != input {
		t.Fatalf("output not reproduced")
	}
}

// oneShotReader returns one part per Read, like a pipe that had exactly that much queued.
type oneShotReader struct{ parts []string }

func (o *oneShotReader) Read(p []byte) (int, error) {
	if len(o.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, o.parts[0])
	o.parts[0] = o.parts[0][n:]
	if o.parts[0] == "" {
		o.parts = o.parts[1:]
	}
	return n, nil
}
