package manifest

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Implemented lists the kinds skiff runs today. The other kinds of the support table are
// parsed and checked in full, then reported as "not implemented yet" and left out of
// Result.Objects, so nothing is ignored silently. Flip an entry when its controller lands.
var Implemented = map[string]bool{
	"Pod":                   true,
	"Deployment":            true,
	"ReplicaSet":            true,
	"ReplicationController": true,
	"ConfigMap":             true,
	"Secret":                true,
	"Service":               true,
	"Namespace":             true,
	"Ingress":               true,
	"StatefulSet":           true,
	"DaemonSet":             true,
	"Job":                   true,
	"CronJob":               true,
	"PersistentVolumeClaim": true,
	"PersistentVolume":      true,
	"Endpoints":             true, // selector-less Services (services.Endpoints)
}

// served is the one apiVersion skiff reads for each kind of its support table.
var served = map[string]schema.GroupVersion{}

func init() {
	for _, r := range Resources {
		if _, ok := supportRules.kinds[r.Kind]; ok {
			served[r.Kind] = r.GVK.GroupVersion()
		}
	}
}

// builtinKinds are the kinds the Kubernetes API server serves, by group: skiff recognises
// them so that it can say "not supported by skiff" rather than "unknown kind".
var builtinKinds = map[string][]string{
	"": {"Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange",
		"Namespace", "Node", "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate",
		"ReplicationController", "ResourceQuota", "Secret", "Service", "ServiceAccount"},
	"apps":                         {"ControllerRevision", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"},
	"batch":                        {"CronJob", "Job"},
	"extensions":                   {"DaemonSet", "Deployment", "Ingress", "NetworkPolicy", "PodSecurityPolicy", "ReplicaSet"},
	"autoscaling":                  {"HorizontalPodAutoscaler", "Scale"},
	"policy":                       {"PodDisruptionBudget", "PodSecurityPolicy", "Eviction"},
	"rbac.authorization.k8s.io":    {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
	"networking.k8s.io":            {"Ingress", "IngressClass", "NetworkPolicy", "IPAddress", "ServiceCIDR"},
	"discovery.k8s.io":             {"EndpointSlice"},
	"storage.k8s.io":               {"StorageClass", "CSIDriver", "CSINode", "CSIStorageCapacity", "VolumeAttachment", "VolumeAttributesClass"},
	"apiextensions.k8s.io":         {"CustomResourceDefinition"},
	"apiregistration.k8s.io":       {"APIService"},
	"admissionregistration.k8s.io": {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"},
	"certificates.k8s.io":          {"CertificateSigningRequest", "ClusterTrustBundle", "PodCertificateRequest"},
	"coordination.k8s.io":          {"Lease", "LeaseCandidate"},
	"events.k8s.io":                {"Event"},
	"flowcontrol.apiserver.k8s.io": {"FlowSchema", "PriorityLevelConfiguration"},
	"node.k8s.io":                  {"RuntimeClass"},
	"scheduling.k8s.io":            {"PriorityClass", "Workload"},
	"resource.k8s.io":              {"DeviceClass", "ResourceClaim", "ResourceClaimTemplate", "ResourceSlice", "DeviceTaintRule"},
	"storagemigration.k8s.io":      {"StorageVersionMigration"},
	"internal.apiserver.k8s.io":    {"StorageVersion"},
	"authentication.k8s.io":        {"TokenReview", "SelfSubjectReview"},
	"authorization.k8s.io":         {"SubjectAccessReview", "SelfSubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectRulesReview"},
}

// kindAction is what to do with an object of some apiVersion and kind.
type kindAction int

const (
	kindRead        kindAction = iota // in the support table: decode, check, default, validate
	kindList                          // v1 List or FooList: expand its items
	kindUnsupported                   // a real kind skiff does not run: one Unsupported problem
	kindError                         // unknown, or an apiVersion no longer served: one Error
)

// classify decides what to do with apiVersion/kind; when the object is not read, it names
// the field at fault and says why.
func classify(apiVersion, kind string) (action kindAction, fieldName, why string) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return kindError, "apiVersion", fmt.Sprintf("invalid apiVersion %q", apiVersion)
	}
	if kind == "List" || strings.HasSuffix(kind, "List") && isBuiltin(gv.Group, strings.TrimSuffix(kind, "List")) {
		return kindList, "", ""
	}
	if want, ok := served[kind]; ok {
		if gv == want {
			return kindRead, "", ""
		}
		if isBuiltin(gv.Group, kind) && (gv.Group == "extensions" || strings.Contains(gv.Version, "alpha") || strings.Contains(gv.Version, "beta")) {
			return kindError, "apiVersion", fmt.Sprintf("%s %s is no longer served; use %s", apiVersion, kind, want)
		}
		return kindError, "apiVersion", fmt.Sprintf("%s is not served as %s; use apiVersion %s", kind, apiVersion, want)
	}
	if isBuiltin(gv.Group, kind) {
		return kindUnsupported, "", fmt.Sprintf("kind %s is not supported by skiff; object ignored", kind)
	}
	if _, ok := builtinKinds[gv.Group]; ok || !strings.Contains(gv.Group, ".") {
		msg := fmt.Sprintf("unknown kind %q in %s", kind, apiVersion)
		if hint := kindHint(kind); hint != "" {
			msg += fmt.Sprintf("; did you mean %q?", hint)
		}
		return kindError, "kind", msg
	}
	return kindUnsupported, "", fmt.Sprintf("kind %s (%s) is a custom resource; skiff does not run custom resources; object ignored", kind, apiVersion)
}

func isBuiltin(group, kind string) bool {
	for _, k := range builtinKinds[group] {
		if k == kind {
			return true
		}
	}
	return false
}

// kindHint finds the kind meant by a misspelt one ("deployment", "Deploymnet").
func kindHint(kind string) string {
	best, bestDist := "", 3
	for _, kinds := range builtinKinds {
		for _, k := range kinds {
			if strings.EqualFold(k, kind) {
				return k
			}
			if d := editDistance(strings.ToLower(k), strings.ToLower(kind)); d < bestDist {
				best, bestDist = k, d
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// namespaced reports whether kind lives in a namespace.
func namespaced(kind string) bool {
	for _, r := range Resources {
		if r.Kind == kind {
			return r.Namespaced
		}
	}
	return true
}
