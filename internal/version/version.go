// Package version holds the build's version, set by the linker (-X).
package version

// Version is the skiff release, e.g. "v0.1.0" or a git describe string.
var Version = "dev"
