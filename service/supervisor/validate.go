// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// MaxStopTimeout bounds how long a stop may wait before SIGKILL; a longer wait is almost
// certainly a unit mistake (milliseconds taken for seconds) and would hold shutdown hostage.
const MaxStopTimeout = 24 * time.Hour

// nameLike reports whether s matches [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}, the rule for container
// names and hostnames. Checked by hand rather than with a regexp: package-level regexps are
// compiled at every start of the binary, which is every CLI call and every setup stage.
func nameLike(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		if !alnum && (i == 0 || b != '_' && b != '.' && b != '-') {
			return false
		}
	}
	return true
}

// validEnvKey reports whether k can be the key of a KEY=VALUE environment entry.
func validEnvKey(k string) bool { return k != "" && !strings.ContainsAny(k, "=\x00") }

func invalid(format string, args ...any) *service.Error {
	return service.Errorf(service.KindInvalidArgument, format, args...)
}

// validName checks a container name; the name becomes a directory name, a journal field,
// a D-Bus object path label and the default hostname, hence the tight rule.
func validName(name string) error {
	switch {
	case name == "":
		return invalid("container name is empty")
	case len(name) > 63:
		return invalid("container name %.20q... is %d characters long; at most 63 are allowed", name, len(name))
	case strings.Contains(name, "/"):
		return invalid("container name %q contains '/'", name)
	case strings.Contains(name, ".."):
		return invalid("container name %q contains '..'", name)
	case !nameLike(name):
		return invalid("container name %q is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'", name)
	}
	return nil
}

// request is a validated StartRequest with every default filled in.
type request struct {
	service.StartRequest
	overlay  bool   // run on an overlay of the base rootfs
	lower    string // the directory the command was resolved in
	security runtime.Security
	seccomp  string // service.SeccompDefault or service.SeccompUnconfined
}

// validate checks everything about req that can be checked without side effects, so that
// a refused start changes nothing. baseRootfs is used when req.Rootfs is empty.
func validate(req service.StartRequest, baseRootfs string) (request, error) {
	r := request{StartRequest: req}
	if err := validName(req.Name); err != nil {
		return r, err
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		return r, invalid("no command given for container %q", req.Name)
	}
	for i, a := range req.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return r, invalid("command argument %d contains a NUL byte", i)
		}
	}
	r.Command = append([]string(nil), req.Command...)
	r.Env = append([]string(nil), req.Env...)
	for _, e := range req.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || !validEnvKey(k) || strings.IndexByte(e, 0) >= 0 {
			return r, invalid("environment entry %q is not KEY=VALUE", e)
		}
	}
	if req.Hostname == "" {
		r.Hostname = req.Name
	} else if !nameLike(req.Hostname) {
		return r, invalid("hostname %q is invalid: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", req.Hostname)
	}

	if r.SoftLimit == 0 {
		// A hard limit alone is the common request (podman's --memory): below the default
		// soft limit it would otherwise be refused for a soft limit nobody asked for, so the
		// default soft limit comes down to it (the warning then accompanies the kill).
		r.SoftLimit = service.DefaultSoftLimit
		if r.HardLimit >= service.MinLimit && r.HardLimit < r.SoftLimit {
			r.SoftLimit = r.HardLimit
		}
	}
	if r.HardLimit == 0 {
		r.HardLimit = service.DefaultHardLimit
	}
	for _, l := range []struct {
		what string
		v    uint64
	}{{"soft", r.SoftLimit}, {"hard", r.HardLimit}} {
		if l.v < service.MinLimit || l.v > service.MaxLimit {
			return r, invalid("%s memory limit %s is out of range [%s, %s]", l.what, size(l.v), size(service.MinLimit), size(service.MaxLimit))
		}
	}
	if r.SoftLimit > r.HardLimit {
		// Name the default when the caller gave only one limit: "40 MiB exceeds 32 MiB"
		// alone would puzzle someone who never asked for 40 MiB.
		soft, hard := size(r.SoftLimit), size(r.HardLimit)
		if req.SoftLimit == 0 {
			soft += " (the default)"
		}
		if req.HardLimit == 0 {
			hard += " (the default)"
		}
		return r, invalid("soft memory limit %s exceeds hard memory limit %s", soft, hard)
	}

	if err := r.validateSecurity(); err != nil {
		return r, err
	}

	switch {
	case r.StopTimeout == 0:
		r.StopTimeout = service.DefaultStopTimeout
	case r.StopTimeout == service.NoGrace:
		r.StopTimeout = 0
	case r.StopTimeout < 0 || r.StopTimeout > MaxStopTimeout:
		return r, invalid("stop timeout %s is out of range [0, %s]", r.StopTimeout, MaxStopTimeout)
	}

	if r.Rootfs == "" {
		if baseRootfs == "" {
			return r, invalid("no rootfs given and the supervisor has no base rootfs")
		}
		if err := checkDir(baseRootfs, "base rootfs"); err != nil {
			return r, err
		}
		r.overlay = true
		r.lower = baseRootfs
	} else {
		if !filepath.IsAbs(r.Rootfs) {
			return r, invalid("rootfs %q is not an absolute path", r.Rootfs)
		}
		r.Rootfs = filepath.Clean(r.Rootfs)
		if err := checkDir(r.Rootfs, "rootfs"); err != nil {
			return r, err
		}
		if isHostRoot(r.Rootfs) {
			// pivot_root cannot make the root it is called from the new root (EBUSY), and a
			// container sharing the host's / would not be a container anyway.
			return r, invalid("rootfs %s is the host's root directory; give a directory holding the container's own root filesystem", r.Rootfs)
		}
		r.lower = r.Rootfs
	}
	if _, err := runtime.ResolveCommand(r.lower, r.Command, r.Env); err != nil {
		kind := service.KindInvalidArgument
		switch {
		case errors.Is(err, runtime.ErrCommandNotFound):
			kind = service.KindCommandNotFound
		case errors.Is(err, runtime.ErrCommandNotExecutable):
			kind = service.KindCommandNotExecutable
		}
		return r, &service.Error{Kind: kind, Msg: fmt.Sprintf("cannot run the command of container %q (rootfs %s)", r.Name, r.lower), Err: err}
	}
	return r, nil
}

// validateSecurity resolves the confinement the request asks for: capabilities, security
// options and network mode. Any name it does not know is refused, naming it, so a typo never
// starts a container less (or more) confined than asked.
func (r *request) validateSecurity() error {
	r.CapAdd = append([]string(nil), r.CapAdd...)
	r.CapDrop = append([]string(nil), r.CapDrop...)
	r.SecurityOpt = append([]string(nil), r.SecurityOpt...)
	caps, err := runtime.ResolveCapabilities(r.CapAdd, r.CapDrop)
	if err != nil {
		return invalid("container %q: %v", r.Name, err)
	}
	net, err := runtime.ParseNetwork(r.Network)
	if err != nil {
		return invalid("container %q: %v", r.Name, err)
	}
	r.Network = string(net)
	r.security = runtime.Security{Capabilities: caps, Network: net}
	r.seccomp = service.SeccompDefault
	for _, opt := range r.SecurityOpt {
		if err := r.securityOpt(opt); err != nil {
			return invalid("container %q: security option %q: %v", r.Name, opt, err)
		}
	}
	return nil
}

// securityOpt applies one --security-opt value, spelt as podman accepts it: KEY=VALUE or
// KEY:VALUE (Docker's older form), no-new-privileges alone meaning true.
func (r *request) securityOpt(opt string) error {
	key, val, hasVal := strings.Cut(opt, "=")
	if !hasVal {
		key, val, hasVal = strings.Cut(opt, ":")
	}
	switch key {
	case "no-new-privileges":
		switch {
		case !hasVal || val == "true":
			r.security.NoNewPrivileges = true
		case val == "false":
			r.security.NoNewPrivileges = false
		default:
			return fmt.Errorf("no-new-privileges takes true or false, not %q", val)
		}
	case "seccomp":
		switch val {
		case "unconfined":
			r.seccomp = service.SeccompUnconfined
		case "":
			return fmt.Errorf("seccomp needs a value: seccomp=unconfined")
		default:
			return fmt.Errorf("custom seccomp profiles are not supported; the only value is seccomp=unconfined (without it the default filter applies)")
		}
	case "label", "apparmor", "mask", "unmask", "proc-opts", "systempaths":
		return fmt.Errorf("%s is not supported by jackfruit (supported: no-new-privileges, seccomp=unconfined)", key)
	default:
		return fmt.Errorf("unknown security option %q (supported: no-new-privileges, seccomp=unconfined)", key)
	}
	return nil
}

// isHostRoot reports whether dir is the supervisor's own root directory, also when reached
// through a symlink or a bind mount of it.
func isHostRoot(dir string) bool {
	a, err := os.Stat(dir)
	if err != nil {
		return false
	}
	b, err := os.Stat("/")
	return err == nil && os.SameFile(a, b)
}

func checkDir(path, what string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return invalid("%s %s does not exist", what, path)
	case err != nil:
		return &service.Error{Kind: service.KindInvalidArgument, Msg: fmt.Sprintf("%s %s is not usable", what, path), Err: err}
	case !fi.IsDir():
		return invalid("%s %s is not a directory", what, path)
	}
	return nil
}

// validSignal accepts the signals kill(2) can send, 1 to SIGRTMAX.
// validSignal checks a signal given to Kill; 0 (none given) is resolved to
// service.DefaultKillSignal before.
func validSignal(sig syscall.Signal) error {
	if sig < 1 || sig > 64 {
		return invalid("signal %d is not a valid signal number (1-64)", int(sig))
	}
	return nil
}

// size prints a byte count the way people give limits: in MiB when it is whole.
func size(b uint64) string {
	if b >= 1<<20 && b%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}
