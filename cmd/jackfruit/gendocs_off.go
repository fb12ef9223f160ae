// SPDX-License-Identifier: Apache-2.0

//go:build !gendocs

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newGenDocsCmd is gen-docs in the shipped binary: the generator lives in a build with
// -tags gendocs (gendocs.go), because cobra/doc's Markdown and YAML packages would add
// ~0.7 ms of package initialisation to every CLI call.
func (c *cli) newGenDocsCmd(*cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:                "gen-docs",
		Short:              "Generate man pages, shell completions and Markdown docs (only in a build with -tags gendocs)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("this jackfruit is built without gen-docs; build it with -tags gendocs (`make docs-gen` and packaging/gen-docs.sh do)")
		},
	}
}
