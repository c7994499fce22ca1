package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// metrics exposes Prometheus metrics. Cluster gauges are computed from the state snapshot
// at scrape time, so nothing is counted twice and nothing costs anything between scrapes.
type metrics struct {
	a   *Agent
	reg *prometheus.Registry
}

var (
	descInfo       = prometheus.NewDesc("skiff_info", "Agent version and node name.", []string{"version", "node"}, nil)
	descLeader     = prometheus.NewDesc("skiff_raft_leader", "1 if this node is the Raft leader.", nil, nil)
	descIndex      = prometheus.NewDesc("skiff_raft_applied_index", "Raft index of the last command applied to the state.", nil, nil)
	descCommit     = prometheus.NewDesc("skiff_live_commit_info", "The live git commit.", []string{"commit", "ref"}, nil)
	descApplied    = prometheus.NewDesc("skiff_live_commit_applied_timestamp_seconds", "When the live commit was applied.", nil, nil)
	descFailed     = prometheus.NewDesc("skiff_sync_failed", "1 if the newest fetched commit (or the fetch) failed and an older commit stays live.", nil, nil)
	descObjects    = prometheus.NewDesc("skiff_objects", "Objects declared by the live commit, by kind.", []string{"kind"}, nil)
	descPods       = prometheus.NewDesc("skiff_pods", "Pods in the cluster by phase.", []string{"phase"}, nil)
	descNodePods   = prometheus.NewDesc("skiff_node_pods", "Pods placed on this node.", nil, nil)
	descLastFetch  = prometheus.NewDesc("skiff_git_last_fetch_timestamp_seconds", "When the leader last fetched git (leader only).", nil, nil)
	descFetchError = prometheus.NewDesc("skiff_git_fetch_failing", "1 if the leader's last fetch failed (leader only).", nil, nil)
)

func newMetrics(a *Agent) *metrics {
	m := &metrics{a: a, reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descLeader, descIndex, descCommit, descApplied, descFailed,
		descObjects, descPods, descNodePods, descLastFetch, descFetchError} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	a := m.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, a.version, a.cfg.Name)
	if a.store == nil {
		return
	}
	s := a.store.State()
	gauge(descLeader, b2f(a.store.IsLeader()))
	gauge(descIndex, float64(s.Index))
	if s.Synced() {
		gauge(descCommit, 1, s.Live.Hash, s.Live.Ref)
		gauge(descApplied, float64(s.Live.AppliedAt.Unix()))
	}
	gauge(descFailed, b2f(s.Failed != nil))
	kinds := map[string]int{}
	for _, o := range s.Git.All() {
		kinds[manifest.KindOf(o)]++
	}
	for k, n := range kinds {
		gauge(descObjects, float64(n), k)
	}
	phases := map[string]int{}
	mine := 0
	for _, p := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
		ph := string(p.Status.Phase)
		if ph == "" {
			ph = string(corev1.PodPending)
		}
		phases[ph]++
		if p.Spec.NodeName == a.cfg.Name {
			mine++
		}
	}
	for ph, n := range phases {
		gauge(descPods, float64(n), ph)
	}
	gauge(descNodePods, float64(mine))
	if a.leader != nil {
		if sy := a.leader.syncer(); sy != nil {
			st := sy.Status()
			if !st.LastFetch.IsZero() {
				gauge(descLastFetch, float64(st.LastFetch.Unix()))
			}
			gauge(descFetchError, b2f(st.LastError != nil))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
