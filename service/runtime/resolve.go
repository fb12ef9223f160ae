// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultPath is the PATH every container starts with (the value podman and Docker use).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Sentinel errors for a command that cannot be run. Exec failures inside a container map to
// exit code 127 (not found) and 126 (not executable), the shell's and podman's convention.
var (
	ErrCommandNotFound      = errors.New("command not found")
	ErrCommandNotExecutable = errors.New("command not executable")
)

// Exit codes a container's init gets when its command cannot be run, and when the runtime
// itself fails (podman's and the shell's conventions).
const (
	ExitCommandNotExecutable = 126
	ExitCommandNotFound      = 127
	ExitRuntimeFailure       = 125
)

// CommandError explains why argv[0] cannot be run. Its message follows podman's wording
// (`executable file "x" not found in $PATH`); errors.Is matches ErrCommandNotFound or
// ErrCommandNotExecutable.
type CommandError struct {
	Name   string // argv[0] as given
	Path   string // the path inside the rootfs that was tried, if any
	Reason string // e.g. "no such file or directory", "permission denied"
	Err    error  // ErrCommandNotFound or ErrCommandNotExecutable
}

func (e *CommandError) Error() string {
	switch {
	case e.Name == "":
		return "no command given"
	case errors.Is(e.Err, ErrCommandNotExecutable):
		return fmt.Sprintf("executable file %q cannot be run: %s", e.Path, e.Reason)
	case !strings.Contains(e.Name, "/"):
		return fmt.Sprintf("executable file %q not found in $PATH: %s", e.Name, e.Reason)
	default:
		return fmt.Sprintf("executable file %q not found: %s", e.Name, e.Reason)
	}
}

func (e *CommandError) Unwrap() error { return e.Err }

// ExitCode is the exit code a container's init gets for this error (126 or 127).
func (e *CommandError) ExitCode() int {
	if errors.Is(e.Err, ErrCommandNotExecutable) {
		return ExitCommandNotExecutable
	}
	return ExitCommandNotFound
}

// ResolveCommand finds args[0] the way execvp would inside a container whose root is rootfs:
// a name without '/' is searched in the PATH of env (DefaultPath when env has none), and
// symlinks are followed inside rootfs, so an absolute link such as /bin/sh -> /bin/busybox
// means rootfs/bin/busybox, never the host's file. It returns the path as seen inside the
// container (e.g. "/bin/sh"). Errors are *CommandError wrapping ErrCommandNotFound or
// ErrCommandNotExecutable.
func ResolveCommand(rootfs string, args, env []string) (string, error) {
	if len(args) == 0 || args[0] == "" {
		return "", &CommandError{Reason: "empty command", Err: ErrCommandNotFound}
	}
	name := args[0]
	if strings.Contains(name, "/") {
		// Relative paths are relative to the container's working directory, which is "/".
		// No lexical cleaning: "a/../b" must go through a's symlink as the kernel would.
		p := name
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		if err := checkExecutable(rootfs, p); err != nil {
			return "", commandError(name, p, err)
		}
		return p, nil
	}
	var firstErr error
	firstPath := ""
	for _, dir := range filepath.SplitList(lookupEnv(env, "PATH", DefaultPath)) {
		if dir == "" {
			dir = "." // POSIX: an empty PATH entry means the working directory, "/" here.
		}
		p := path.Join("/", dir, name)
		err := checkExecutable(rootfs, p)
		if err == nil {
			return p, nil
		}
		// Like execvp, remember a candidate that exists but cannot be run: "permission
		// denied" says more than "not found" when nothing better turns up later.
		if firstErr == nil && !isNotFound(err) {
			firstErr, firstPath = err, p
		}
	}
	if firstErr != nil {
		return "", commandError(name, firstPath, firstErr)
	}
	return "", commandError(name, "", syscall.ENOENT)
}

// checkExecutable reports whether the container path p (absolute) names a regular file with
// an execute bit inside rootfs.
func checkExecutable(rootfs, p string) error {
	host, err := resolveInRoot(rootfs, p)
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return syscall.EACCES
	}
	return nil
}

func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP)
}

func commandError(name, p string, err error) *CommandError {
	ce := &CommandError{Name: name, Path: p, Err: ErrCommandNotExecutable}
	if isNotFound(err) {
		ce.Err = ErrCommandNotFound
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.EISDIR):
		ce.Reason = "is a directory"
	case errors.As(err, &errno):
		ce.Reason = errno.Error()
	default:
		ce.Reason = err.Error()
	}
	return ce
}

// lookupEnv returns the last value of key in env (later entries override earlier ones, as in
// execve), or def.
func lookupEnv(env []string, key, def string) string {
	v := def
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// maxSymlinks matches the kernel's limit on symlinks followed in one path walk.
const maxSymlinks = 40

// resolveInRoot follows every symlink in the absolute container path p as if root were "/"
// and returns the host path of the result. ".." never climbs above root. The final
// component is resolved too; a missing component gives an fs.ErrNotExist error.
func resolveInRoot(root, p string) (string, error) {
	resolved := "/"
	remaining := p
	links := 0
	for remaining != "" {
		var comp string
		if i := strings.IndexByte(remaining, '/'); i >= 0 {
			comp, remaining = remaining[:i], remaining[i+1:]
		} else {
			comp, remaining = remaining, ""
		}
		switch comp {
		case "", ".":
			continue
		case "..":
			// resolved holds no symlinks, so a lexical ".." is exact.
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, comp)
		host := filepath.Join(root, next)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = "/"
		}
		if remaining != "" {
			target += "/" + remaining
		}
		remaining = target
	}
	return filepath.Join(root, resolved), nil
}
