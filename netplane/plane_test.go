package netplane

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Node: "n1", NodeIP: netip.MustParseAddr("192.168.1.11"), ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"the defaults", func(*Config) {}, ""},
		{"no node name", func(c *Config) { c.Node = "" }, "node name is required"},
		{"IPv6 node address", func(c *Config) { c.NodeIP = netip.MustParseAddr("fd00::1") }, "not an IPv4 address"},
		{"no pod range", func(c *Config) { c.ClusterCIDR = netip.Prefix{} }, "pod CIDR"},
		{"overlapping ranges", func(c *Config) { c.ServiceCIDR = netip.MustParsePrefix("10.42.128.0/17") }, "overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tt.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v; want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}
