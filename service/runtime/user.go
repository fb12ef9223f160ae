// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// identity is who an exec'd command runs as.
type identity struct {
	set      bool // false: stay root, as the container's init is
	uid, gid uint32
	groups   []uint32
	home     string // from /etc/passwd; empty when the user has no entry
}

// env is the part of the environment the identity decides (HOME).
func (id identity) env() []string {
	if id.home == "" {
		return nil
	}
	return []string{"HOME=" + id.home}
}

// passwdEntry and groupEntry are the fields of /etc/passwd and /etc/group lines we use.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// lookupUser resolves a user spec ("", "UID", "UID:GID", "NAME", "NAME:GROUP", "UID:GROUP")
// against the /etc/passwd and /etc/group seen from the calling thread (the container's, in
// the exec stage). A numeric uid needs no passwd entry (as in docker and podman); a name must
// have one. Supplementary groups are those /etc/group lists the user in, unless a group is
// given explicitly.
func lookupUser(spec string) (identity, error) {
	if spec == "" {
		return identity{home: "/root"}, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return identity{}, fmt.Errorf("user %q: want UID[:GID] or NAME[:GROUP]", spec)
	}
	users, uerr := readPasswd("/etc/passwd")
	groups, gerr := readGroup("/etc/group")
	id := identity{set: true}
	var pw *passwdEntry
	if n, err := parseID(userPart); err == nil {
		id.uid = n
		for i := range users {
			if users[i].uid == n {
				pw = &users[i]
				break
			}
		}
		if pw == nil {
			id.gid = n // podman: a uid without an entry gets the same gid
		}
	} else {
		if uerr != nil {
			return identity{}, fmt.Errorf("user %q: the container has no readable /etc/passwd: %v", userPart, uerr)
		}
		for i := range users {
			if users[i].name == userPart {
				pw = &users[i]
				break
			}
		}
		if pw == nil {
			return identity{}, fmt.Errorf("user %q: no such user in the container's /etc/passwd", userPart)
		}
		id.uid = pw.uid
	}
	if pw != nil {
		id.gid, id.home = pw.gid, pw.home
	}
	if hasGroup {
		if n, err := parseID(groupPart); err == nil {
			id.gid = n
		} else {
			if gerr != nil {
				return identity{}, fmt.Errorf("group %q: the container has no readable /etc/group: %v", groupPart, gerr)
			}
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					id.gid, found = g.gid, true
					break
				}
			}
			if !found {
				return identity{}, fmt.Errorf("group %q: no such group in the container's /etc/group", groupPart)
			}
		}
		return id, nil
	}
	if pw != nil {
		for _, g := range groups {
			for _, m := range g.members {
				if m == pw.name && g.gid != id.gid {
					id.groups = append(id.groups, g.gid)
				}
			}
		}
	}
	return id, nil
}

// parseID accepts a decimal id below 2^32-1 ((uid_t)-1 means "unchanged" to the kernel).
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(n), nil
}

func readPasswd(path string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			return
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	return out, err
}

func readGroup(path string) ([]groupEntry, error) {
	var out []groupEntry
	err := readColonFile(path, func(f []string) {
		if len(f) < 4 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		out = append(out, groupEntry{name: f[0], gid: gid, members: members})
	})
	return out, err
}

// readColonFile calls fn with the fields of each non-comment line. Callers treat a missing
// file as one without entries (a minimal rootfs may have neither file; numeric ids work).
func readColonFile(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}
