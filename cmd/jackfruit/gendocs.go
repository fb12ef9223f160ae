// SPDX-License-Identifier: Apache-2.0

//go:build gendocs

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/jackfruit/jackfruit/service"
)

// newGenDocsCmd generates man pages, shell completions and Markdown reference pages from the
// command tree, so they never drift from the flags. Packaging and `make docs-gen` call it, in
// a build with -tags gendocs: cobra/doc's Markdown and YAML packages cost ~0.7 ms of package
// initialisation at every start of the binary, i.e. at every CLI call (gendocs_off.go).
func (c *cli) newGenDocsCmd(root *cobra.Command) *cobra.Command {
	var manDir, complDir, mdDir string
	cmd := &cobra.Command{
		Use:    "gen-docs [--man DIR] [--completions DIR] [--markdown DIR]",
		Short:  "Generate man pages, shell completions and Markdown docs from the command tree",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if manDir == "" && complDir == "" && mdDir == "" {
				return &usageError{cmd, errors.New("nothing to do: give --man, --completions and/or --markdown")}
			}
			root.DisableAutoGenTag = true // reproducible output: no generation date
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "JACKFRUIT", Section: "1", Source: "jackfruit " + service.Version, Manual: "Jackfruit Manual"}
				if err := doc.GenManTree(root, hdr, manDir); err != nil {
					return fmt.Errorf("generating man pages in %s: %w", manDir, err)
				}
			}
			if mdDir != "" {
				if err := os.MkdirAll(mdDir, 0o755); err != nil {
					return err
				}
				if err := doc.GenMarkdownTree(root, mdDir); err != nil {
					return fmt.Errorf("generating Markdown in %s: %w", mdDir, err)
				}
			}
			if complDir != "" {
				if err := os.MkdirAll(complDir, 0o755); err != nil {
					return err
				}
				// File names follow where Debian's packages install them:
				// bash-completion/completions/jackfruit, zsh/vendor-completions/_jackfruit,
				// fish/vendor_completions.d/jackfruit.fish.
				for _, g := range []struct {
					file string
					gen  func(string) error
				}{
					{"jackfruit.bash", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
					{"_jackfruit", root.GenZshCompletionFile},
					{"jackfruit.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
				} {
					if err := g.gen(filepath.Join(complDir, g.file)); err != nil {
						return fmt.Errorf("generating %s: %w", g.file, err)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write man pages (section 1) to DIR")
	cmd.Flags().StringVar(&complDir, "completions", "", "write bash, zsh and fish completions to DIR")
	cmd.Flags().StringVar(&mdDir, "markdown", "", "write one Markdown page per command to DIR")
	return cmd
}
