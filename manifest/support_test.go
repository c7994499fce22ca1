package manifest

import (
	"testing"
)

// TestSupportTableMatchesAPI keeps support.yaml honest: every field it names exists in the
// Kubernetes API types.
func TestSupportTableMatchesAPI(t *testing.T) {
	if bad := checkRulePaths(); len(bad) > 0 {
		t.Errorf("support.yaml names fields the API types do not have: %q", bad)
	}
	for kind := range Implemented {
		if _, ok := supportRules.kinds[kind]; !ok {
			t.Errorf("Implemented[%q], but support.yaml has no such kind", kind)
		}
	}
}

func TestSupportTable(t *testing.T) {
	rows := map[string]SupportRow{}
	for _, r := range SupportTable() {
		rows[r.Kind+" "+r.Field] = r
	}
	tests := []struct {
		kind, field string
		want        Support
	}{
		{"Pod", "metadata.name", Supported},
		{"Pod", "metadata.generateName", Refused},
		{"Pod", "spec.containers[].image", Supported},
		{"Pod", "spec.containers[].env[].valueFrom.secretKeyRef", Supported},
		{"Pod", "spec.containers[].resources.limits[cpu]", Supported},
		{"Pod", "spec.containers[].resources.limits[ephemeral-storage]", Ignored},
		{"Pod", "spec.containers[].resources.limits[*]", Refused},
		{"Pod", "spec.containers[].lifecycle", Ignored},
		{"Pod", "spec.volumes[].nfs", Refused},
		{"Pod", "spec.volumes[].emptyDir", Supported},
		{"Pod", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", Supported},
		{"Pod", "spec.affinity.podAntiAffinity", Ignored},
		{"Pod", "spec.os", Ignored}, // not in support.yaml: unsupported by default
		{"Pod", "spec.hostPID", Refused},
		{"Pod", "status", Output},
		{"Deployment", "spec.template.spec.containers[].livenessProbe.httpGet", Supported},
		{"Deployment", "spec.strategy", Supported},
		{"StatefulSet", "spec.volumeClaimTemplates[].metadata.name", Supported},
		{"Service", "spec.loadBalancerIP", Ignored},
		{"Service", "spec.ports[].targetPort", Supported},
		{"Ingress", "spec.rules[].http.paths[].backend.resource", Refused},
		{"PersistentVolume", "spec.nfs", Refused},
		{"Secret", "stringData", Supported},
		{"DaemonSet", "spec.updateStrategy", Supported},
		{"Job", "spec.suspend", Supported},
		{"Job", "spec.podFailurePolicy", Refused},
		{"Job", "spec.selector", Ignored},
		{"CronJob", "spec.timeZone", Supported},
		{"CronJob", "spec.jobTemplate.spec.ttlSecondsAfterFinished", Supported},
	}
	for _, tt := range tests {
		got, ok := rows[tt.kind+" "+tt.field]
		if !ok {
			t.Errorf("SupportTable() has no row %s %s", tt.kind, tt.field)
			continue
		}
		if got.Support != tt.want {
			t.Errorf("SupportTable() %s %s = %s; want %s", tt.kind, tt.field, got.Support, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		apiVersion, kind string
		action           kindAction
		field, why       string
	}{
		{"v1", "Pod", kindRead, "", ""},
		{"apps/v1", "Deployment", kindRead, "", ""},
		{"networking.k8s.io/v1", "Ingress", kindRead, "", ""},
		{"v1", "List", kindList, "", ""},
		{"v1", "PodList", kindList, "", ""},
		{"apps/v1beta1", "Deployment", kindError, "apiVersion", "apps/v1beta1 Deployment is no longer served; use apps/v1"},
		{"apps/v1beta2", "StatefulSet", kindError, "apiVersion", "apps/v1beta2 StatefulSet is no longer served; use apps/v1"},
		{"extensions/v1beta1", "Ingress", kindError, "apiVersion", "extensions/v1beta1 Ingress is no longer served; use networking.k8s.io/v1"},
		{"networking.k8s.io/v1beta1", "Ingress", kindError, "apiVersion", "networking.k8s.io/v1beta1 Ingress is no longer served; use networking.k8s.io/v1"},
		{"batch/v1beta1", "CronJob", kindError, "apiVersion", "batch/v1beta1 CronJob is no longer served; use batch/v1"},
		{"apps/v2", "Deployment", kindError, "apiVersion", "Deployment is not served as apps/v2; use apiVersion apps/v1"},
		{"a/b/c", "Pod", kindError, "apiVersion", `invalid apiVersion "a/b/c"`},
		{"autoscaling/v2", "HorizontalPodAutoscaler", kindUnsupported, "", "kind HorizontalPodAutoscaler is not supported by skiff; object ignored"},
		{"networking.k8s.io/v1", "NetworkPolicy", kindUnsupported, "", "kind NetworkPolicy is not supported by skiff; object ignored"},
		{"rbac.authorization.k8s.io/v1", "ClusterRole", kindUnsupported, "", "kind ClusterRole is not supported by skiff; object ignored"},
		{"v1", "ServiceAccount", kindUnsupported, "", "kind ServiceAccount is not supported by skiff; object ignored"},
		{"policy/v1", "PodDisruptionBudget", kindUnsupported, "", "kind PodDisruptionBudget is not supported by skiff; object ignored"},
		{"apiextensions.k8s.io/v1", "CustomResourceDefinition", kindUnsupported, "", "kind CustomResourceDefinition is not supported by skiff; object ignored"},
		{"monitoring.coreos.com/v1", "ServiceMonitor", kindUnsupported, "", "kind ServiceMonitor (monitoring.coreos.com/v1) is a custom resource; skiff does not run custom resources; object ignored"},
		{"v1", "Deploymnet", kindError, "kind", `unknown kind "Deploymnet" in v1; did you mean "Deployment"?`},
		{"v1", "Frobnicator", kindError, "kind", `unknown kind "Frobnicator" in v1`},
		{"frob/v1", "Pod", kindError, "apiVersion", "Pod is not served as frob/v1; use apiVersion v1"},
	}
	for _, tt := range tests {
		action, field, why := classify(tt.apiVersion, tt.kind)
		if action != tt.action || field != tt.field || why != tt.why {
			t.Errorf("classify(%q, %q) = %v, %q, %q; want %v, %q, %q", tt.apiVersion, tt.kind, action, field, why, tt.action, tt.field, tt.why)
		}
	}
}
