package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/skiffhq/skiff/e2e/harness"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	cleanup, err := harness.FindSkiff()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// needsPodman leaves the end-to-end tests out of `go test -short`.
func needsPodman(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: real skiff agents on real Podman (not in -short)")
	}
}
