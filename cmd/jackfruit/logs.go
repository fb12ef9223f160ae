// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service"
)

// logWriter writes container output exactly as printed: stdout lines to stdout, stderr lines
// to stderr, each byte as is, pieces of a long line joined (only the last piece gets '\n',
// and not even that when the container ended the stream without one).
type logWriter struct {
	out, err   *bufio.Writer
	timestamps bool
	midLine    map[service.Stream]bool // a partial piece was written; the line goes on
}

func newLogWriter(stdout, stderr io.Writer, timestamps bool) *logWriter {
	return &logWriter{out: bufio.NewWriterSize(stdout, 64<<10), err: bufio.NewWriterSize(stderr, 64<<10),
		timestamps: timestamps, midLine: map[service.Stream]bool{}}
}

func (w *logWriter) write(l service.LogLine) error {
	dst := w.out
	if l.Stream == service.Stderr {
		dst = w.err
	}
	if w.timestamps && !w.midLine[l.Stream] {
		dst.WriteString(l.Time.UTC().Format(time.RFC3339Nano))
		dst.WriteByte(' ')
	}
	dst.Write(l.Data)
	open := l.Partial || l.NoNewline
	if !open {
		dst.WriteByte('\n')
	}
	w.midLine[l.Stream] = open
	// Flush per line so that interleaving of stdout and stderr follows the container's order
	// and a follower sees each line as it comes; bufio only saves syscalls within a line.
	if err := dst.Flush(); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return errStopOutput
		}
		return err
	}
	return nil
}

// errStopOutput ends a log copy whose reader went away (e.g. `jackfruit logs x | head`).
var errStopOutput = errors.New("output closed")

// maxRFC3339Unix is 9999-12-31T23:59:59Z, the last time RFC 3339 (the wire's format) can say.
const maxRFC3339Unix = 253402300799

// parseLogTime reads the value of --since or --until (flag): RFC 3339 times, a duration ago
// ("10m", "1h30m") and Unix seconds.
func parseLogTime(flag, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	// Unix seconds before durations: "0" is also a duration (0 s ago: nothing), but a number
	// without a unit means seconds since the epoch, so --since 0 shows everything.
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		if n > maxRFC3339Unix {
			return time.Time{}, fmt.Errorf("invalid %s %s: Unix seconds after the year 9999 (at most %d)", flag, s, maxRFC3339Unix)
		}
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid %s %q: use an RFC 3339 time (2026-01-02T15:04:05Z), a duration ago (10m, 2h) or Unix seconds", flag, s)
}

func (c *cli) newLogsCmd() *cobra.Command {
	var follow, timestamps bool
	var tail int
	var sinceStr, untilStr string
	cmd := &cobra.Command{
		Use:   "logs [flags] NAME",
		Short: "Show a container's output",
		Long: `Print what a container wrote, from its log file in the supervisor's state directory:
stdout lines on stdout, stderr lines on stderr, bytes unchanged. --follow keeps printing new
output until the container exits. --since and --until keep the lines printed from --since on
and before --until (RFC 3339, a duration ago such as 10m, or Unix seconds); with --follow,
following ends at --until if the container has not ended before, as in podman. The same lines
are in the journal: journalctl CONTAINER=NAME.`,
		ValidArgsFunction: c.completeNames(nil),
		Args:              names(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := service.LogOptions{Follow: follow, Tail: tail}
			if tail < -1 {
				return &usageError{cmd, fmt.Errorf("--tail %d: use a number of lines, or -1 for all", tail)}
			}
			if sinceStr != "" {
				t, err := parseLogTime("--since", sinceStr, time.Now())
				if err != nil {
					return &usageError{cmd, err}
				}
				opts.Since = t
			}
			if untilStr != "" {
				t, err := parseLogTime("--until", untilStr, time.Now())
				if err != nil {
					return &usageError{cmd, err}
				}
				opts.Until = t
			}
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			if tail == 0 {
				// The core reads Tail 0 as "all"; --tail 0 means no old lines at all. The
				// container must exist all the same.
				if !follow {
					_, err := cl.Get(cmd.Context(), args[0])
					return err
				}
				opts.Since = time.Now()
			}
			w := newLogWriter(c.stdout, c.stderr, timestamps)
			err = cl.Logs(cmd.Context(), args[0], opts, w.write)
			if errors.Is(err, errStopOutput) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing output until the container exits (or --until)")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "print only the last N lines (-1: all)")
	cmd.Flags().StringVar(&sinceStr, "since", "", "only output since this time: RFC 3339, a duration ago (10m) or Unix seconds")
	cmd.Flags().StringVar(&untilStr, "until", "", "only output before this time (same forms as --since); ends --follow there")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with the time it was printed (RFC 3339, UTC)")
	return cmd
}

// quoteArgs renders a command line for humans.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			q[i] = strconv.Quote(a)
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
