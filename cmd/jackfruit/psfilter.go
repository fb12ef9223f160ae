// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackfruit/jackfruit/service"
)

// psStatusWords are the words ps --filter status= takes: podman's (created, running, exited)
// and jackfruit's own state names. podman's "exited" is every final state, as inspect's
// {{.State.Status}} says; "killed" and "killed-by-memory-limit" pick the final states apart.
var psStatusWords = map[string][]service.State{
	"created":                    {service.StateCreated},
	"running":                    {service.StateRunning},
	"stopping":                   {service.StateStopping},
	"exited":                     {service.StateExited, service.StateKilled, service.StateOOMKill},
	string(service.StateKilled):  {service.StateKilled},
	string(service.StateOOMKill): {service.StateOOMKill},
}

// psFilter is what ps --filter selects. As in podman, the values given for one key are
// alternatives (ORed) and the keys must all match (ANDed); a key not given matches anything.
type psFilter struct {
	names  []*regexp.Regexp
	ids    []string
	states []service.State
	exited []int
	// status: a status filter was given; as in podman (and docker) it lists exited
	// containers too, as -a would.
	status bool
}

// parsePsFilters parses ps's --filter KEY=VALUE arguments.
func parsePsFilters(args []string) (*psFilter, error) {
	f := &psFilter{}
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("invalid --filter %q: use KEY=VALUE (keys: name, id, status, exited)", a)
		}
		switch key {
		case "name":
			// podman's name filter is a regular expression, matched anywhere in the name.
			re, err := regexp.Compile(value)
			if err != nil {
				return nil, fmt.Errorf("invalid --filter %q: not a regular expression: %w", a, err)
			}
			f.names = append(f.names, re)
		case "id":
			if value == "" || strings.Trim(strings.ToLower(value), "0123456789abcdef") != "" {
				return nil, fmt.Errorf("invalid --filter %q: an ID is hexadecimal digits (a prefix of the full ID)", a)
			}
			f.ids = append(f.ids, strings.ToLower(value))
		case "status":
			states, ok := psStatusWords[value]
			if !ok {
				words := make([]string, 0, len(psStatusWords))
				for w := range psStatusWords {
					words = append(words, w)
				}
				slices.Sort(words)
				return nil, fmt.Errorf("invalid --filter %q: unknown status (use %s)", a, strings.Join(words, ", "))
			}
			f.states = append(f.states, states...)
			f.status = true
		case "exited":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 255 {
				return nil, fmt.Errorf("invalid --filter %q: an exit code is a number from 0 to 255", a)
			}
			f.exited = append(f.exited, n)
		default:
			return nil, fmt.Errorf("invalid --filter %q: unknown key %q (keys: name, id, status, exited)", a, key)
		}
	}
	return f, nil
}

// match reports whether i passes every key of the filter.
func (f *psFilter) match(i service.ContainerInfo) bool {
	if len(f.names) > 0 && !slices.ContainsFunc(f.names, func(re *regexp.Regexp) bool { return re.MatchString(i.Name) }) {
		return false
	}
	if len(f.ids) > 0 && !slices.ContainsFunc(f.ids, func(p string) bool { return strings.HasPrefix(i.ID, p) }) {
		return false
	}
	if len(f.states) > 0 && !slices.Contains(f.states, i.State) {
		return false
	}
	// An exit code is what run and wait return (128+N for signal N); only ended containers
	// have one, as in podman.
	if len(f.exited) > 0 && (!i.State.Final() || !slices.Contains(f.exited, exitCode(i))) {
		return false
	}
	return true
}

func (f *psFilter) apply(infos []service.ContainerInfo) []service.ContainerInfo {
	return slices.DeleteFunc(infos, func(i service.ContainerInfo) bool { return !f.match(i) })
}
