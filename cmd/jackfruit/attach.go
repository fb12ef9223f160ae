// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// defaultDetachKeys is docker's and podman's default: ctrl-p ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys reads a detach sequence as docker spells it: comma-separated keys, each a
// single character or ctrl-X (X a letter or one of @ [ \ ] ^ _). "" disables detaching.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(strings.ToLower(k), "ctrl-") && len(k) == 6:
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				out = append(out, c-'a'+1)
			case c >= 'A' && c <= 'Z':
				out = append(out, c-'A'+1)
			case strings.IndexByte("@[\\]^_", c) >= 0:
				out = append(out, c&0x1f)
			default:
				return nil, fmt.Errorf("invalid detach keys %q: %q is not ctrl- and a letter or one of @[\\]^_", s, k)
			}
		default:
			return nil, fmt.Errorf("invalid detach keys %q: %q is neither one character nor ctrl-X (example: %s)", s, k, defaultDetachKeys)
		}
	}
	return out, nil
}

// detachScanner passes input through until the detach sequence is typed. Bytes that start
// the sequence are held back until it is clear whether the whole sequence follows.
type detachScanner struct {
	keys    []byte
	matched int
}

// scan returns what to forward from in and whether the sequence was completed.
func (d *detachScanner) scan(in []byte) (out []byte, detach bool) {
	if len(d.keys) == 0 {
		return in, false
	}
	for _, b := range in {
		if b == d.keys[d.matched] {
			d.matched++
			if d.matched == len(d.keys) {
				return out, true
			}
			continue
		}
		// Not the sequence after all: forward what was held back, then look at b afresh.
		out = append(out, d.keys[:d.matched]...)
		d.matched = 0
		if b == d.keys[0] {
			d.matched = 1
			continue
		}
		out = append(out, b)
	}
	return out, false
}

var errDetached = errors.New("detached")

// attachTerminal connects this terminal to the container's until the container ends
// (returning its final state) or the detach keys are typed (errDetached). With stdin, our
// input goes to the container and our terminal is in raw mode meanwhile.
func (c *cli) attachTerminal(ctx context.Context, cl *control.Client, name string, replay, stdin bool, keys []byte) (service.ContainerInfo, error) {
	in, _ := c.stdin.(*os.File)
	out, _ := c.stdout.(*os.File)
	if stdin && in != nil && term.IsTerminal(int(in.Fd())) {
		t, err := makeRaw(in)
		if err != nil {
			return service.ContainerInfo{}, err
		}
		defer t.restore()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	detached := make(chan struct{})
	copied := make(chan struct{})
	info, err := cl.Attach(ctx, name, replay, func(a control.Attached) {
		input, err := pollable(a.Input)
		if err != nil {
			a.Output.Close()
			close(copied)
			return
		}
		sizeFrom := out
		if in != nil && term.IsTerminal(int(in.Fd())) {
			sizeFrom = in
		}
		if sizeFrom != nil && term.IsTerminal(int(sizeFrom.Fd())) {
			go followWindowSize(ctx, sizeFrom, input)
		}
		go func() {
			defer close(copied)
			_, _ = io.Copy(c.stdout, a.Output)
			a.Output.Close()
		}()
		if stdin {
			go func() {
				defer input.Close()
				ds := detachScanner{keys: keys}
				buf := make([]byte, 4096)
				for {
					n, err := c.stdin.Read(buf)
					fwd, detach := ds.scan(buf[:n])
					if len(fwd) > 0 {
						if _, werr := input.Write(fwd); werr != nil {
							return
						}
					}
					if detach {
						close(detached)
						cancel()
						return
					}
					if err != nil {
						return
					}
				}
			}()
		} else {
			go func() { <-ctx.Done(); input.Close() }()
		}
	})
	select {
	case <-detached:
		return service.ContainerInfo{}, errDetached
	default:
	}
	if err == nil {
		// The final reply comes once the output is drained; let the copy catch up.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
	}
	return info, err
}

func (c *cli) newAttachCmd() *cobra.Command {
	var keys string
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach [flags] NAME",
		Short: "Connect this terminal to a container started with -t",
		Long: `Connect this terminal to the terminal of container NAME (started with start -t or
run -t): its output appears here and what you type goes to it (this terminal is in raw mode
meanwhile and follows this window's size). Type the detach keys (default ctrl-p ctrl-q) to
leave the container running and return; when the container ends, attach exits with its exit
code. The container's output still goes to its log and the journal.`,
		Example: `  jackfruit start -t box -- /bin/sh
  jackfruit attach box
  jackfruit attach --detach-keys ctrl-x,x box`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := parseDetachKeys(keys)
			if err != nil {
				return &exitError{code: 125, err: &usageError{cmd, err}}
			}
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return &exitError{code: 125, err: err}
			}
			defer cl.Close()
			final, err := c.attachTerminal(cmdContext(cmd), cl, args[0], false, !noStdin, k)
			return c.attachResult(args[0], final, err)
		},
	}
	cmd.Flags().StringVar(&keys, "detach-keys", defaultDetachKeys, "key sequence that detaches (comma-separated: a character or ctrl-X each; empty: never)")
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "only show the output; do not send input")
	return cmd
}

// attachResult turns the end of an attachment into the command's exit.
func (c *cli) attachResult(name string, final service.ContainerInfo, err error) error {
	if errors.Is(err, errDetached) {
		fmt.Fprintf(c.stderr, "\r\nDetached from %s; it goes on (jackfruit attach %s to return).\r\n", name, name)
		return nil
	}
	if err != nil {
		return &exitError{code: 125, err: err}
	}
	if code := exitCode(final); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
