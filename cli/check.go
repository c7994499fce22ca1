package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/manifest"
)

// errManifests is returned (exit code 1) when skiff check finds errors.
var errManifests = errors.New("manifests have errors")

func newCheckCmd() *cobra.Command {
	var opts manifest.Options
	var output string
	cmd := &cobra.Command{
		Use:   "check PATH...",
		Short: "Validate manifests offline, exactly as the agent reads them",
		Long: `Check reads Kubernetes manifests (files, or directories searched for *.yaml, *.yml and
*.json) with the parser the agent uses, and prints one line per problem:

  file:doc: kind/name: field: error|unsupported: message (line N)

"error" stops a commit from being applied; "unsupported" names a field or kind skiff
ignores. No cluster is needed. Exits 1 when there is any error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "text" {
				return fmt.Errorf("check: unknown output format %q (want text or json)", output)
			}
			return runCheck(cmd.OutOrStdout(), cmd.ErrOrStderr(), args, opts, output == "json")
		},
	}
	cmd.Flags().StringVarP(&opts.DefaultNamespace, "namespace", "n", "default", "namespace of objects that name none")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (the problems as a JSON array)")
	return cmd
}

// runCheck parses every path and prints the problems, then a summary on errOut.
func runCheck(out, errOut io.Writer, paths []string, opts manifest.Options, asJSON bool) error {
	problems := manifest.Problems{}
	var files, objects int
	for _, p := range paths {
		r, err := checkPath(p, opts)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		files += len(r.Files)
		objects += len(r.Objects)
		problems = append(problems, r.Problems...)
	}
	sort.SliceStable(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Doc < b.Doc
	})
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(problems); err != nil {
			return err
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(out, p)
		}
	}
	errs := len(problems.Errors())
	fmt.Fprintf(errOut, "%s, %s, %s, %d unsupported\n", plural(files, "file"), plural(objects, "object"),
		plural(errs, "error"), len(problems)-errs)
	if errs > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("check: %s: %w", plural(errs, "error"), errManifests)}
	}
	return nil
}

// checkPath parses a directory (recursively) or one file, naming files as the user gave them.
func checkPath(path string, opts manifest.Options) (manifest.Result, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return manifest.Result{}, err
	}
	if fi.IsDir() {
		r := manifest.ParseFS(os.DirFS(path), ".", opts)
		rename(&r, func(name string) string { return filepath.Join(path, name) })
		return r, nil
	}
	// A file the user names is read even when it is a symlink to elsewhere.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return manifest.Result{}, err
	}
	r := manifest.ParseFS(os.DirFS(filepath.Dir(real)), filepath.Base(real), opts)
	rename(&r, func(string) string { return path })
	return r, nil
}

func rename(r *manifest.Result, name func(string) string) {
	for i := range r.Problems {
		r.Problems[i].File = name(r.Problems[i].File)
	}
	for i := range r.Files {
		r.Files[i] = name(r.Files[i])
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
