// Package e2e holds skiff's end-to-end tests: real `skiff agent` processes syncing real git
// repositories (fixtures/gitrepo) into real Podman pods (fixtures/testenv), driven only
// through the skiff CLI, the agent's HTTP webhook and the podman CLI.
//
// `make test` runs them with SKIFF_BIN=bin/skiff; without SKIFF_BIN the test binary builds
// skiff once into a temporary directory. `go test -short` leaves them out.
package e2e
