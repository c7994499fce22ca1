package reconciler

import (
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type mapLookup struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

func (m mapLookup) ConfigMap(ns, name string) (*corev1.ConfigMap, bool) {
	c, ok := m.cms[ns+"/"+name]
	return c, ok
}

func (m mapLookup) Secret(ns, name string) (*corev1.Secret, bool) {
	s, ok := m.secrets[ns+"/"+name]
	return s, ok
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "1"},
		{"x-$(A)-$(B)-y", "x-1-two-y"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"},
		{"cost $5", "cost $5"},
		{"$(A", "$(A"},
		{"trailing $", "trailing $"},
	}
	for _, tt := range tests {
		if got := expand(tt.in, vars); got != tt.want {
			t.Errorf("expand(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestContainerEnv(t *testing.T) {
	yes := true
	lk := mapLookup{
		cms:     map[string]*corev1.ConfigMap{"default/cfg": {Data: map[string]string{"greeting": "hi", "MODE": "prod", "bad-key": "x"}}},
		secrets: map[string]*corev1.Secret{"default/sec": {Data: map[string][]byte{"token": []byte("t0k")}}},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1",
		Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{NodeName: "pi1"},
		Status: corev1.PodStatus{PodIP: "10.88.0.5"}}
	mem := resource.MustParse("64Mi")
	tests := []struct {
		name    string
		c       corev1.Container
		extra   []corev1.EnvVar
		want    []string
		wantErr string
	}{
		{name: "values and expansion", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "A", Value: "1"}, {Name: "B", Value: "$(A)-2"}}},
			want: []string{"A=1", "B=1-2"}},
		{name: "configmap and secret keys", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "G", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}},
			{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "token"}}}}},
			want: []string{"G=hi", "T=t0k"}},
		{name: "downward api", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "N", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}}},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mem}}},
			want: []string{"N=web-1", "IP=10.88.0.5", "NODE=pi1", "APP=web", "MEM=64"}},
		{name: "envFrom with prefix; env wins", c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{{Prefix: "C_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			Env:     []corev1.EnvVar{{Name: "C_MODE", Value: "dev"}}},
			want: []string{"C_MODE=dev", "C_bad-key=x", "C_greeting=hi"}},
		{name: "service variables lose to the user's", extra: []corev1.EnvVar{{Name: "WEB_SERVICE_HOST", Value: "10.0.0.1"}, {Name: "X", Value: "svc"}},
			c:    corev1.Container{Env: []corev1.EnvVar{{Name: "X", Value: "mine"}}},
			want: []string{"WEB_SERVICE_HOST=10.0.0.1", "X=mine"}},
		{name: "missing configmap", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "G", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}},
			wantErr: `env G: configmap "nope" not found`},
		{name: "missing key", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "G", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}}}},
			wantErr: `env G: key "k" not found in configmap "cfg"`},
		{name: "optional missing is skipped", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "G", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: &yes}}}}},
			want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := containerEnv(pod, &tt.c, lk, tt.extra)
			if tt.wantErr != "" {
				var ce *ConfigError
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &ce) {
					t.Fatalf("containerEnv = %v, %v; want ConfigError %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("containerEnv = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestPodPhase(t *testing.T) {
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	ok := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
	bad := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	creating := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	crashLoop := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	tests := []struct {
		name     string
		policy   corev1.RestartPolicy
		inits    []corev1.ContainerStatus
		ctrs     []corev1.ContainerStatus
		initDone bool
		want     corev1.PodPhase
	}{
		{"creating", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{creating}, true, corev1.PodPending},
		{"running", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{running}, true, corev1.PodRunning},
		{"crash loop stays running", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{crashLoop}, true, corev1.PodRunning},
		{"init pending", corev1.RestartPolicyAlways, []corev1.ContainerStatus{creating}, []corev1.ContainerStatus{creating}, false, corev1.PodPending},
		{"init failed, never", corev1.RestartPolicyNever, []corev1.ContainerStatus{bad}, []corev1.ContainerStatus{creating}, false, corev1.PodFailed},
		{"job succeeded", corev1.RestartPolicyNever, nil, []corev1.ContainerStatus{ok}, true, corev1.PodSucceeded},
		{"job failed", corev1.RestartPolicyNever, nil, []corev1.ContainerStatus{ok, bad}, true, corev1.PodFailed},
		{"on failure retries", corev1.RestartPolicyOnFailure, nil, []corev1.ContainerStatus{bad}, true, corev1.PodRunning},
		{"always with all exited", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{ok}, true, corev1.PodRunning},
	}
	for _, tt := range tests {
		pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: tt.policy}}
		if got := podPhase(pod, tt.inits, tt.ctrs, tt.initDone); got != tt.want {
			t.Errorf("podPhase(%s) = %s; want %s", tt.name, got, tt.want)
		}
	}
}

func TestQOSClass(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name string
		res  corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{"none", corev1.ResourceRequirements{}, corev1.PodQOSBestEffort},
		{"limits only", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")}}, corev1.PodQOSGuaranteed},
		{"requests below limits", corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: q("1Mi")}, Limits: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}}, corev1.PodQOSBurstable},
	}
	for _, tt := range tests {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: tt.res}}}}
		if got := qosClass(pod); got != tt.want {
			t.Errorf("qosClass(%s) = %s; want %s", tt.name, got, tt.want)
		}
	}
}
