//go:build tools

// Package tools pins dependencies that helpers are about to use, so `go mod tidy` keeps them
// while their packages are being written. Remove an import once real code uses it.
package tools

import (
	_ "github.com/containers/podman/v4/pkg/bindings"
	_ "github.com/containers/podman/v4/pkg/bindings/containers"
	_ "github.com/containers/podman/v4/pkg/bindings/images"
	_ "github.com/containers/podman/v4/pkg/bindings/pods"
	_ "github.com/containers/podman/v4/pkg/bindings/system"
	_ "github.com/containers/podman/v4/pkg/specgen"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/term"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health/grpc_health_v1"
	_ "gopkg.in/yaml.v3"
)
