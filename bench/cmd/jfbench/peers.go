// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/runtime/seccomp"
)

// peers holds the OCI bundles and state roots crun and runc use. Both runtimes run the same
// bundle over the very rootfs jackfruit uses as its base.
type peers struct {
	trueBundle  string // process /bin/true
	sleepBundle string // process sleep (footprint item)
	crunRoot    string
	runcRoot    string
	crunOK      error // nil when crun can run the bundle
	runcOK      error
	configNote  string
}

func (p *peers) crunArgv(verb string, args ...string) []string {
	return append([]string{"crun", "--root", p.crunRoot, "--cgroup-manager=disabled", verb}, args...)
}

func (p *peers) runcArgv(verb string, args ...string) []string {
	return append([]string{"runc", "--root", p.runcRoot, verb}, args...)
}

// preparePeers builds the bundles with `crun spec` and adjusts them, then checks each
// runtime once so a broken peer becomes a "not measured" row rather than 30 failures.
func (b *bench) preparePeers(ctx context.Context) *peers {
	c := b.cfg
	p := &peers{
		trueBundle:  filepath.Join(c.work, "bundle-true"),
		sleepBundle: filepath.Join(c.work, "bundle-sleep"),
		crunRoot:    filepath.Join(c.work, "crun-state"),
		runcRoot:    filepath.Join(c.work, "runc-state"),
	}
	for _, d := range []string{p.crunRoot, p.runcRoot} {
		_ = os.MkdirAll(d, 0o700)
	}
	var err error
	if _, err = exec.LookPath("crun"); err != nil {
		p.crunOK, p.runcOK = fmt.Errorf("crun not installed (test/deps.sh installs it): %w", err), err
		return p
	}
	for bundle, args := range map[string][]string{
		p.trueBundle:  {"/bin/true"},
		p.sleepBundle: {"sleep", "1000000"},
	} {
		if err = writeBundle(ctx, bundle, c.rootfs, args, c.peerConfig); err != nil {
			break
		}
	}
	if err != nil {
		p.crunOK, p.runcOK = err, err
		return p
	}
	if c.peerConfig == "trimmed" {
		p.configNote = "config.json from `crun spec`, then: terminal=false, args=[/bin/true], root=" + c.rootfs +
			" readonly, namespaces pid+uts+ipc+mount (no network, no cgroup namespace), " +
			"mounts trimmed to /proc, /dev (tmpfs), /dev/pts, /dev/shm and no maskedPaths/readonlyPaths: " +
			"LESS work than jackfruit's runtime does"
	} else {
		p.configNote = "config.json from `crun spec`, then: terminal=false, args=[/bin/true], root=" + c.rootfs +
			" readonly, namespaces pid+uts+ipc+mount (network and cgroup namespaces removed: jackfruit creates neither), " +
			"the spec's mounts minus /sys/fs/cgroup, its maskedPaths and readonlyPaths: the same work jackfruit's runtime does " +
			"(/proc, /dev tmpfs, /dev/pts, /dev/shm, /dev/mqueue, read-only /sys, the same masked and read-only paths), " +
			"the OCI default capabilities and the same default seccomp profile (seccomp.DefaultOCI); " +
			"jackfruit additionally mounts an overlay per container"
	}
	p.crunOK = runOnce(ctx, p.crunArgv("run", "--bundle", p.trueBundle, "jfb-probe-crun"))
	if _, lerr := exec.LookPath("runc"); lerr != nil {
		p.runcOK = fmt.Errorf("runc not installed (test/deps.sh installs it): %w", lerr)
	} else {
		p.runcOK = runOnce(ctx, p.runcArgv("run", "--bundle", p.trueBundle, "jfb-probe-runc"))
	}
	b.report.Details["peer_config"] = p.configNote
	return p
}

func runOnce(ctx context.Context, argv []string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("`%s` failed: %s", strings.Join(argv, " "), errString(err, out))
	}
	return nil
}

// writeBundle generates config.json with `crun spec` and applies the adjustments described
// in the table header, so the peers run the same command over the same files as jackfruit.
func writeBundle(ctx context.Context, dir, rootfs string, args []string, mode string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "config.json"))
	cmd := exec.CommandContext(ctx, "crun", "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("crun spec: %s", errString(err, out))
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("parsing generated %s: %w", path, err)
	}
	proc, _ := spec["process"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	if proc == nil || linux == nil {
		return fmt.Errorf("%s: generated spec lacks process or linux", path)
	}
	proc["terminal"] = false
	proc["args"] = args
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	spec["hostname"] = "jfbench"

	var nss []any
	for _, n := range asSlice(linux["namespaces"]) {
		m, _ := n.(map[string]any)
		switch m["type"] {
		case "pid", "uts", "ipc", "mount":
			nss = append(nss, m)
		}
	}
	linux["namespaces"] = nss

	if mode == "trimmed" {
		var mounts []any
		for _, m := range asSlice(spec["mounts"]) {
			mm, _ := m.(map[string]any)
			switch mm["destination"] {
			case "/proc", "/dev", "/dev/pts", "/dev/shm":
				mounts = append(mounts, mm)
			}
		}
		spec["mounts"] = mounts
		delete(linux, "maskedPaths")
		delete(linux, "readonlyPaths")
	} else {
		// Without a cgroup namespace and with cgroups disabled a cgroup mount shows the
		// host's hierarchy; drop it, keep everything else.
		var mounts []any
		for _, m := range asSlice(spec["mounts"]) {
			mm, _ := m.(map[string]any)
			if mm["destination"] != "/sys/fs/cgroup" {
				mounts = append(mounts, mm)
			}
		}
		spec["mounts"] = mounts
		// The same confinement a default jackfruit container gets: the OCI default
		// capabilities in every set but ambient, and the same seccomp profile resolved for
		// them (crun spec's own set is smaller and it installs no filter).
		caps := runtime.DefaultCapabilities.Names()
		capSets := map[string]any{}
		for _, set := range []string{"bounding", "effective", "inheritable", "permitted"} {
			capSets[set] = caps
		}
		proc["capabilities"] = capSets
		filter, err := seccomp.DefaultOCI(caps)
		if err != nil {
			return fmt.Errorf("seccomp profile for the peers: %w", err)
		}
		linux["seccomp"] = filter
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
