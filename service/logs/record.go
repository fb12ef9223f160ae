// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackfruit/jackfruit/service"
)

// Log file format (version 1), little-endian throughout:
//
//	file   = magic record*
//	magic  = "JFLOG01\n"                      8 bytes; identifies format and version
//	record = header data
//	header = 0xA5 flags 0x00 0x00 len time    16 bytes
//	  0xA5   1 byte   record marker (catches a reader that lost its place)
//	  flags  1 byte   bit 0: stream (0 stdout, 1 stderr); bit 1: partial (more of the line follows);
//	                  bit 2: no newline (the stream ended right after this final piece without
//	                  printing '\n'; added within version 1: files without it read as before,
//	                  readers from before it refuse records that carry it)
//	  len    uint32   length of data in bytes
//	  time   int64    when the supervisor read the bytes, Unix nanoseconds
//	data   = len raw bytes: the line (or piece) without its newline, any byte values
//
// Records are never rewritten; a file only grows until it is rotated. A crash can leave a
// torn last record: readers stop before it and OpenContainerLog truncates it away.
const (
	fileMagic     = "JFLOG01\n"
	headerLen     = int64(len(fileMagic))
	recHeaderLen  = 16
	recMarker     = 0xA5
	flagStderr    = 1 << 0
	flagPartial   = 1 << 1
	flagNoEOL     = 1 << 2
	maxRecordData = 16 << 20 // readers reject larger lengths as corruption; writers use MaxLinePiece
)

// record is a decoded record header; data is read separately.
type record struct {
	stream  uint8 // 0 stdout, 1 stderr
	partial bool
	noEOL   bool // the stream ended after this record without a newline
	n       int
	time    int64
}

func (r record) Stream() service.Stream {
	if r.stream == 1 {
		return service.Stderr
	}
	return service.Stdout
}

// appendRecord encodes one record.
func appendRecord(b []byte, stderr, partial, noEOL bool, t int64, data []byte) []byte {
	var flags byte
	if stderr {
		flags |= flagStderr
	}
	if partial {
		flags |= flagPartial
	}
	if noEOL {
		flags |= flagNoEOL
	}
	b = append(b, recMarker, flags, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	return append(b, data...)
}

func parseRecordHeader(h []byte) (record, error) {
	if h[0] != recMarker || h[2] != 0 || h[3] != 0 || h[1]&^(flagStderr|flagPartial|flagNoEOL) != 0 {
		return record{}, errors.New("bad record header")
	}
	n := binary.LittleEndian.Uint32(h[4:8])
	if n > maxRecordData {
		return record{}, fmt.Errorf("record length %d exceeds %d", n, maxRecordData)
	}
	return record{
		stream:  h[1] & flagStderr,
		partial: h[1]&flagPartial != 0,
		noEOL:   h[1]&flagNoEOL != 0,
		n:       int(n),
		time:    int64(binary.LittleEndian.Uint64(h[8:16])),
	}, nil
}

// checkMagic verifies the file header of f.
func checkMagic(f *os.File) error {
	var m [headerLen]byte
	if _, err := f.ReadAt(m[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: not a jackfruit log file (shorter than its header)", f.Name())
		}
		return fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if string(m[:]) != fileMagic {
		return fmt.Errorf("%s: not a jackfruit log file (version 1 header %q missing)", f.Name(), fileMagic)
	}
	return nil
}

// scanRecords reads the records of f in [from, limit) and calls fn for each; data is nil
// unless withData (then it is valid only during the call). It returns the offset after the
// last whole record: a torn record at the end (crash, or limit inside a record) is not an
// error, corruption in the middle is.
func scanRecords(f *os.File, from, limit int64, withData bool, fn func(rec record, data []byte) error) (int64, error) {
	if limit <= from {
		return from, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, from, limit-from), 64<<10)
	off := from
	var hdr [recHeaderLen]byte
	var data []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return off, nil
			}
			return off, fmt.Errorf("reading %s at offset %d: %w", f.Name(), off, err)
		}
		rec, err := parseRecordHeader(hdr[:])
		if err != nil {
			return off, fmt.Errorf("%s: corrupt log file at offset %d: %w", f.Name(), off, err)
		}
		if off+recHeaderLen+int64(rec.n) > limit {
			return off, nil // torn tail
		}
		if withData {
			if cap(data) < rec.n {
				data = make([]byte, rec.n)
			}
			data = data[:rec.n]
			if _, err := io.ReadFull(br, data); err != nil {
				return off, fmt.Errorf("reading %s at offset %d: %w", f.Name(), off, err)
			}
		} else if _, err := br.Discard(rec.n); err != nil {
			return off, fmt.Errorf("reading %s at offset %d: %w", f.Name(), off, err)
		}
		if err := fn(rec, data); err != nil {
			return off, err
		}
		off += recHeaderLen + int64(rec.n)
	}
}
