package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent"
)

// TestAgentConfigPrecedence: defaults < config file < flags, for every flag.
func TestAgentConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte("repo: file:///from-file\npoll: 30s\nnetwork: fromfile\nhostPathAllow: [/srv]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(c agent.Config) bool
	}{
		{"file only", []string{"--config", file}, func(c agent.Config) bool {
			return c.Repo == "file:///from-file" && c.Poll.Duration == 30*time.Second && c.Network == "fromfile" && c.NetPlane
		}},
		{"flags win", []string{"--config", file, "--poll", "3s", "--netplane=false", "--network", "podman"}, func(c agent.Config) bool {
			return c.Repo == "file:///from-file" && c.Poll.Duration == 3*time.Second && !c.NetPlane && c.Network == "podman"
		}},
		{"slices replace", []string{"--config", file, "--host-path-allow", "/a", "--host-path-allow", "/b"}, func(c agent.Config) bool {
			return reflect.DeepEqual(c.HostPathAllow, []string{"/a", "/b"})
		}},
		{"every kind of flag", []string{"--repo", "x", "--max-voters", "3", "--snapshot-threshold", "7", "--leave-on-terminate", "--node-grace", "1s"}, func(c agent.Config) bool {
			return c.Repo == "x" && c.MaxVoters == 3 && c.SnapshotThreshold == 7 && c.LeaveOnTerminate && c.NodeGrace.Duration == time.Second
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newAgentCmd()
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg := agent.Default()
			if f := cmd.Flags().Lookup("config").Value.String(); f != "" {
				if err := cfg.LoadFile(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := applyChanged(cmd.Flags(), &cfg); err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("config for %v = %+v", tt.args, cfg)
			}
		})
	}
}
