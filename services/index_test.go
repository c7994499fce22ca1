package services

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// TestAllEndpointsMatchesEndpointsOf compares the indexed computation with EndpointsOf
// over a random cluster: several namespaces, multi-label selectors, empty and missing
// selectors, ready and unready pods.
func TestAllEndpointsMatchesEndpointsOf(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	nss := []string{"default", "other"}
	apps := []string{"a", "b", "c", "d"}
	var git []manifest.Object
	for i := range 40 {
		s := svc(fmt.Sprintf("s%d", i), func(s *corev1.Service) {
			s.Namespace = nss[r.IntN(len(nss))]
			switch r.IntN(5) {
			case 0:
				s.Spec.Selector = nil
			case 1:
				s.Spec.Selector = map[string]string{}
			case 2:
				s.Spec.Selector = map[string]string{"app": apps[r.IntN(len(apps))], "tier": "fe"}
			default:
				s.Spec.Selector = map[string]string{"app": apps[r.IntN(len(apps))]}
			}
		})
		git = append(git, s)
	}
	var pods []*corev1.Pod
	for i := range 300 {
		p := pod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.42.%d.%d", i/200, 2+i%200), r.IntN(3) > 0, func(p *corev1.Pod) {
			p.Namespace = nss[r.IntN(len(nss))]
			p.UID = types.UID(fmt.Sprintf("u%d", i))
			p.Labels = map[string]string{"app": apps[r.IntN(len(apps))]}
			if r.IntN(2) == 0 {
				p.Labels["tier"] = "fe"
			}
		})
		pods = append(pods, p)
	}
	s := build(t, git, pods...)
	all := AllEndpoints(s)
	n := 0
	for _, sv := range List(s, "") {
		want := EndpointsOf(s, sv)
		got := all[state.KeyOf(sv)]
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("AllEndpoints[%s/%s] = %s; EndpointsOf = %s", sv.Namespace, sv.Name, render(got), render(want))
		}
		if want != nil && len(want.Subsets) > 0 {
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d Services have endpoints: the fixture proves little", n)
	}
}
