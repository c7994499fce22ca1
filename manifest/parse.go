package manifest

import (
	"io/fs"
)

// Options tune parsing.
type Options struct {
	// DefaultNamespace is given to namespaced objects without one ("default" when empty).
	DefaultNamespace string
	// MaxFileSize rejects larger files with an error naming the file (DefaultMaxFileSize
	// when 0).
	MaxFileSize int64
}

// DefaultMaxFileSize is the largest manifest file skiff reads.
const DefaultMaxFileSize = 4 << 20

// ParseFS parses every *.yaml, *.yml and *.json file under root in fsys (recursively, in
// lexical order), refusing symlinks that point outside root.
//
// PLACEHOLDER: being written in parallel; the signature is the contract.
func ParseFS(fsys fs.FS, root string, opts Options) Result {
	return Result{}
}

// Parse parses the content of one file (name is used in problems only).
//
// PLACEHOLDER: being written in parallel; the signature is the contract.
func Parse(name string, data []byte, opts Options) Result {
	return Result{}
}
