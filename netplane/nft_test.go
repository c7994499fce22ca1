package netplane

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// nftChains lists the chain and set names of the table in namespace ns.
func (l *lab) nftNames(ns string) (chains, sets []string) {
	l.t.Helper()
	out := l.in(ns, "nft", "list", "table", "ip", Table)
	for _, m := range regexp.MustCompile(`(?m)^\t(chain|set) (\S+) \{`).FindAllStringSubmatch(out, -1) {
		if m[1] == "chain" {
			chains = append(chains, m[2])
		} else {
			sets = append(sets, m[2])
		}
	}
	slices.Sort(chains)
	slices.Sort(sets)
	return chains, sets
}

// TestTransaction applies successive rulesets to a scratch namespace and checks that each
// update leaves exactly the new ruleset's chains and sets, keeps the affinity sets'
// entries, and that a Plane recovers when its table vanished behind its back.
func TestTransaction(t *testing.T) {
	l := newLab(t)
	ns := l.id + "-nft"
	l.netns(ns)
	s := sys{netns: nsPath(ns)}
	ctx := context.Background()

	full := newFixture(t, withInternalLocal(), standardCluster()...)
	n1 := Render(RenderInput{State: full.state(), Node: "n1", ClusterCIDR: clusterCIDR})
	// The next commit drops Service np, and pod web-b (10.42.1.3) is gone.
	var git []manifest.Object
	for _, o := range withInternalLocal() {
		if o.GetName() != "np" {
			git = append(git, o)
		}
	}
	var cluster []manifest.Object
	for _, o := range standardCluster() {
		if o.GetName() != "web-b" {
			cluster = append(cluster, o)
		}
	}
	next := Render(RenderInput{State: newFixture(t, git, cluster...).state(), Node: "n1", ClusterCIDR: clusterCIDR})
	empty := Render(RenderInput{State: newFixture(t, nil).state(), Node: "n1", ClusterCIDR: clusterCIDR})

	if err := s.nft(ctx, Transaction(nil, n1)); err != nil {
		t.Fatal(err)
	}
	stickyA := ""
	for _, set := range n1.Sets {
		if strings.Contains(set, "10.42.1.2/8080") {
			stickyA = set
		}
	}
	l.in(ns, "nft", "add", "element", "ip", Table, stickyA, "{ 10.42.9.9 }")

	for _, step := range []struct {
		name       string
		prev, next *Ruleset
	}{
		{"a Service and an endpoint go", n1, next},
		{"everything goes", next, empty},
		{"everything comes back", empty, n1},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := s.nft(ctx, Transaction(step.prev, step.next)); err != nil {
				t.Fatal(err)
			}
			chains, sets := l.nftNames(ns)
			want, wantSets := slices.Clone(step.next.Chains), slices.Clone(step.next.Sets)
			slices.Sort(want)
			slices.Sort(wantSets)
			if !slices.Equal(chains, want) || !slices.Equal(sets, wantSets) {
				t.Errorf("after the update the table has chains %v and sets %v; want %v and %v", chains, sets, want, wantSets)
			}
			out := l.in(ns, "nft", "list", "table", "ip", Table)
			if step.next == next && !strings.Contains(out, "10.42.9.9") {
				t.Errorf("the affinity entry of a kept endpoint was lost:\n%s", out)
			}
			if strings.Contains(out, "default/np/") != (step.next == n1) {
				t.Errorf("Service np's rules present = %v; want %v", !(step.next == n1), step.next == n1)
			}
		})
	}

	t.Run("one endpoint becoming ready rewrites only its Services' chains", func(t *testing.T) {
		f := newFixture(t, withInternalLocal(), standardCluster()...)
		before := Render(RenderInput{State: f.state(), Node: "n1", ClusterCIDR: clusterCIDR})
		if err := s.nft(ctx, Transaction(nil, before)); err != nil {
			t.Fatal(err)
		}
		ready := fpod("web-d", "n1", "10.42.1.4", true, "app", "web")
		f.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(ready), UID: ready.UID, Status: ready.Status}}})
		after := Render(RenderInput{State: f.state(), Node: "n1", ClusterCIDR: clusterCIDR})
		script := Transaction(before, after)
		// web-d joins the 8 Services selecting app=web: their service (and local, cluster)
		// chains change and each gets a new endpoint chain; nothing else is sent.
		if n := strings.Count(script, "\tchain "); n > 30 || n < 8 {
			t.Errorf("the update defines %d chains (of %d); want only those of the changed Services:\n%s", n, len(after.Chains), script)
		}
		if err := s.nft(ctx, script); err != nil {
			t.Fatal(err)
		}
		if got := l.in(ns, "nft", "list", "table", "ip", Table); strings.Count(got, "dnat to 10.42.1.4:") != 8 {
			t.Errorf("after the update web-d is the target of %d DNAT rules; want 8 (one per Service port)", strings.Count(got, "dnat to 10.42.1.4:"))
		}
	})

	t.Run("a vanished table is made again", func(t *testing.T) {
		p := &Plane{sys: s, log: testLog(t), applied: n1}
		l.in(ns, "nft", "delete", "table", "ip", Table)
		if err := p.applyRules(ctx, next); err != nil {
			t.Fatal(err)
		}
		if chains, _ := l.nftNames(ns); len(chains) != len(next.Chains) {
			t.Errorf("table has %d chains; want %d", len(chains), len(next.Chains))
		}
	})
}
