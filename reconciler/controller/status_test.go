package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/state"
)

// renderStatus renders a Deployment's status for comparison.
func renderStatus(d *appsv1.Deployment) string {
	st := d.Status
	parts := []string{fmt.Sprintf("replicas=%d updated=%d ready=%d available=%d unavailable=%d observed=%v",
		st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, st.UnavailableReplicas,
		st.ObservedGeneration == d.Generation)}
	for _, c := range st.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return strings.Join(parts, " ")
}

func (c *cluster) deployment(name string) *appsv1.Deployment {
	o, _ := c.state().Git.Get(state.Key{Kind: "Deployment", Namespace: "default", Name: name})
	return WithStatus(c.state(), c.now, o).(*appsv1.Deployment)
}

func TestDeploymentStatus(t *testing.T) {
	tests := []struct {
		name  string
		agent agent
		run   func(c *cluster)
		want  string
	}{
		{name: "rollout complete", run: func(c *cluster) {
			c.sync(deploy("web", 3, "img:v1"))
			c.converge(nil)
		}, want: "replicas=3 updated=3 ready=3 available=3 unavailable=0 observed=true Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable"},
		{name: "new template not yet acted on", run: func(c *cluster) {
			c.sync(deploy("web", 3, "img:v1"))
			c.converge(nil)
			c.sync(deploy("web", 3, "img:v2"))
		}, want: "replicas=3 updated=0 ready=3 available=3 unavailable=0 observed=false Available=True/MinimumReplicasAvailable Progressing=True/ReplicaSetUpdated"},
		{name: "rollout in progress", agent: agent{readyAfter: time.Minute}, run: func(c *cluster) {
			c.sync(deploy("web", 4, "img:v1"))
			c.converge(nil)
			c.sync(deploy("web", 4, "img:v2", rolling("1", "0")))
			c.plan()
			c.runNodes()
		}, want: "replicas=5 updated=1 ready=4 available=4 unavailable=1 observed=true Available=True/MinimumReplicasAvailable Progressing=True/ReplicaSetUpdated"},
		{name: "progress deadline exceeded", agent: agent{neverReady: "img:bad"}, run: func(c *cluster) {
			c.sync(deploy("web", 2, "img:bad", deadline(10)))
			c.converge(nil)
			c.now = c.now.Add(11 * time.Second)
		}, want: "replicas=2 updated=2 ready=0 available=0 unavailable=2 observed=true Available=False/MinimumReplicasUnavailable Progressing=False/ProgressDeadlineExceeded"},
		{name: "within the progress deadline", agent: agent{neverReady: "img:bad"}, run: func(c *cluster) {
			c.sync(deploy("web", 2, "img:bad", deadline(10)))
			c.converge(nil)
			c.now = c.now.Add(9 * time.Second)
		}, want: "replicas=2 updated=2 ready=0 available=0 unavailable=2 observed=true Available=False/MinimumReplicasUnavailable Progressing=True/ReplicaSetUpdated"},
		{name: "paused", run: func(c *cluster) {
			c.sync(deploy("web", 2, "img:v1"))
			c.converge(nil)
			c.sync(deploy("web", 2, "img:v2", paused))
			c.converge(nil)
		}, want: "replicas=2 updated=0 ready=2 available=2 unavailable=0 observed=true Available=True/MinimumReplicasAvailable Progressing=Unknown/DeploymentPaused"},
		{name: "not yet available (minReadySeconds)", run: func(c *cluster) {
			c.sync(deploy("web", 2, "img:v1", minReady(30), rolling("0", "1")))
			c.plan()
			c.runNodes()
		}, want: "replicas=2 updated=2 ready=2 available=0 unavailable=2 observed=true Available=False/MinimumReplicasUnavailable Progressing=True/ReplicaSetUpdated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.agent = tt.agent
			tt.run(c)
			if got := renderStatus(c.deployment("web")); got != tt.want {
				t.Errorf("WithStatus(%s) = %s; want %s", tt.name, got, tt.want)
			}
		})
	}
}

func TestProgressDeadlineMessage(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.neverReady = "img:bad"
	c.sync(deploy("web", 1, "img:bad", deadline(10)))
	c.converge(nil)
	c.now = c.now.Add(time.Minute)
	d := c.deployment("web")
	rs := c.replicaSets()[0]
	want := fmt.Sprintf("ReplicaSet %q has timed out progressing.", rs.Name)
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentProgressing && cond.Message != want {
			t.Errorf("WithStatus(deadline) message = %q; want %q", cond.Message, want)
		}
	}
	if d.Annotations[AnnotationRevision] != "1" {
		t.Errorf("WithStatus(deadline) revision = %q; want 1 (from the new ReplicaSet)", d.Annotations[AnnotationRevision])
	}
}

func TestReplicaSetStatus(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	rs := replicaSet("kubia", 3, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kubia"}}, map[string]string{"app": "kubia"})
	rs.Spec.MinReadySeconds = 10
	rc := replicationController("legacy", 2, map[string]string{"app": "legacy"}, map[string]string{"app": "legacy"})
	c.sync(rs, rc)
	c.plan()
	c.runNodes()
	c.now = c.now.Add(5 * time.Second)
	tests := []struct {
		name string
		kind string
		want string
	}{
		{"kubia", "ReplicaSet", "replicas=3 labeled=3 ready=3 available=0"},
		{"legacy", "ReplicationController", "replicas=2 labeled=2 ready=2 available=2"},
	}
	for _, tt := range tests {
		o, _ := c.state().Git.Get(state.Key{Kind: tt.kind, Namespace: "default", Name: tt.name})
		var got string
		switch o := WithStatus(c.state(), c.now, o).(type) {
		case *appsv1.ReplicaSet:
			got = fmt.Sprintf("replicas=%d labeled=%d ready=%d available=%d", o.Status.Replicas, o.Status.FullyLabeledReplicas, o.Status.ReadyReplicas, o.Status.AvailableReplicas)
		case *corev1.ReplicationController:
			got = fmt.Sprintf("replicas=%d labeled=%d ready=%d available=%d", o.Status.Replicas, o.Status.FullyLabeledReplicas, o.Status.ReadyReplicas, o.Status.AvailableReplicas)
		}
		if got != tt.want {
			t.Errorf("WithStatus(%s/%s) = %s; want %s", tt.kind, tt.name, got, tt.want)
		}
	}
}

func TestWithStatusLeavesOthersAlone(t *testing.T) {
	c := newCluster(t)
	p := bare("web", "img")
	if got := WithStatus(c.state(), c.now, p); got != p {
		t.Errorf("WithStatus(pod) = %p; want the same object %p", got, p)
	}
}
