package cli

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update-support", false, "rewrite docs/SUPPORT.md")

// TestSupportDocIsCurrent keeps docs/SUPPORT.md (linked from the README) identical to what
// the parser enforces. Run `go test ./cli -update-support` after changing the table.
func TestSupportDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := writeSupport(&b); err != nil {
		t.Fatal(err)
	}
	const path = "../docs/SUPPORT.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./cli -update-support)", err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("docs/SUPPORT.md is out of date with manifest/support.yaml: go test ./cli -update-support")
	}
}
