// Package manifest turns Kubernetes manifests into typed k8s.io/api objects: it parses
// multi-document YAML and JSON, applies defaults, validates, and reports every field skiff
// does not support. It does no I/O beyond reading the fs.FS it is given.
package manifest

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// Object is a typed Kubernetes object: metadata plus runtime type information.
// Objects handed around skiff are shared and must be treated as read-only;
// DeepCopyObject before changing one.
type Object interface {
	metav1.Object
	runtime.Object
}

// Scheme knows every API type skiff reads, including kinds it only reports as unsupported.
var Scheme = runtime.NewScheme()

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		networkingv1.AddToScheme, discoveryv1.AddToScheme, storagev1.AddToScheme,
	} {
		if err := add(Scheme); err != nil {
			panic(err)
		}
	}
}

var (
	strictYAML = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	plainJSON = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme,
		json.SerializerOptions{})
)

// Decode turns JSON (with apiVersion and kind) into a typed object. It is the inverse of
// Encode and is used for objects skiff itself stored (Raft log, snapshots, API).
func Decode(data []byte) (Object, error) {
	obj, _, err := plainJSON.Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	o, ok := obj.(Object)
	if !ok {
		return nil, fmt.Errorf("decode: %T has no object metadata", obj)
	}
	return o, nil
}

// Encode renders an object as JSON with its apiVersion and kind set.
func Encode(o runtime.Object) ([]byte, error) {
	if o.GetObjectKind().GroupVersionKind().Kind == "" {
		o = o.DeepCopyObject() // objects are shared: never change the caller's
		if err := SetTypeMeta(o); err != nil {
			return nil, err
		}
	}
	return runtime.Encode(plainJSON, o)
}

// SetTypeMeta fills apiVersion and kind from the scheme when they are empty, so an object
// built in Go prints and encodes like one read from a manifest.
func SetTypeMeta(o runtime.Object) error {
	gvk := o.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "" && gvk.Version != "" {
		return nil
	}
	gvks, _, err := Scheme.ObjectKinds(o)
	if err != nil {
		return err
	}
	o.GetObjectKind().SetGroupVersionKind(gvks[0])
	return nil
}

// KindOf returns an object's kind, from its TypeMeta or else from the scheme.
func KindOf(o runtime.Object) string {
	if k := o.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	gvks, _, err := Scheme.ObjectKinds(o)
	if err != nil || len(gvks) == 0 {
		return fmt.Sprintf("%T", o)
	}
	return gvks[0].Kind
}

// Resource describes one kind as the CLI and HTTP API name it.
type Resource struct {
	Kind       string
	Plural     string // "deployments": the API path and the CLI name
	Short      []string
	Namespaced bool
	GVK        schema.GroupVersionKind
}

// Resources are the kinds skiff stores and serves, in the order `skiff get all` prints them.
var Resources = []Resource{
	{Kind: "Pod", Plural: "pods", Short: []string{"po", "pod"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("Pod")},
	{Kind: "Service", Plural: "services", Short: []string{"svc", "service"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("Service")},
	{Kind: "Endpoints", Plural: "endpoints", Short: []string{"ep"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("Endpoints")},
	{Kind: "Deployment", Plural: "deployments", Short: []string{"deploy", "deployment"}, Namespaced: true, GVK: appsv1.SchemeGroupVersion.WithKind("Deployment")},
	{Kind: "ReplicaSet", Plural: "replicasets", Short: []string{"rs", "replicaset"}, Namespaced: true, GVK: appsv1.SchemeGroupVersion.WithKind("ReplicaSet")},
	{Kind: "ReplicationController", Plural: "replicationcontrollers", Short: []string{"rc", "replicationcontroller"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("ReplicationController")},
	{Kind: "StatefulSet", Plural: "statefulsets", Short: []string{"sts", "statefulset"}, Namespaced: true, GVK: appsv1.SchemeGroupVersion.WithKind("StatefulSet")},
	{Kind: "DaemonSet", Plural: "daemonsets", Short: []string{"ds", "daemonset"}, Namespaced: true, GVK: appsv1.SchemeGroupVersion.WithKind("DaemonSet")},
	{Kind: "ControllerRevision", Plural: "controllerrevisions", Short: []string{"controllerrevision"}, Namespaced: true, GVK: appsv1.SchemeGroupVersion.WithKind("ControllerRevision")},
	{Kind: "Job", Plural: "jobs", Short: []string{"job"}, Namespaced: true, GVK: batchv1.SchemeGroupVersion.WithKind("Job")},
	{Kind: "CronJob", Plural: "cronjobs", Short: []string{"cj", "cronjob"}, Namespaced: true, GVK: batchv1.SchemeGroupVersion.WithKind("CronJob")},
	{Kind: "ConfigMap", Plural: "configmaps", Short: []string{"cm", "configmap"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("ConfigMap")},
	{Kind: "Secret", Plural: "secrets", Short: []string{"secret"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("Secret")},
	{Kind: "Ingress", Plural: "ingresses", Short: []string{"ing", "ingress"}, Namespaced: true, GVK: networkingv1.SchemeGroupVersion.WithKind("Ingress")},
	{Kind: "PersistentVolumeClaim", Plural: "persistentvolumeclaims", Short: []string{"pvc"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim")},
	{Kind: "PersistentVolume", Plural: "persistentvolumes", Short: []string{"pv"}, Namespaced: false, GVK: corev1.SchemeGroupVersion.WithKind("PersistentVolume")},
	{Kind: "Namespace", Plural: "namespaces", Short: []string{"ns", "namespace"}, Namespaced: false, GVK: corev1.SchemeGroupVersion.WithKind("Namespace")},
	{Kind: "Node", Plural: "nodes", Short: []string{"no", "node"}, Namespaced: false, GVK: corev1.SchemeGroupVersion.WithKind("Node")},
	{Kind: "Event", Plural: "events", Short: []string{"ev", "event"}, Namespaced: true, GVK: corev1.SchemeGroupVersion.WithKind("Event")},
}

// LookupResource finds a resource by plural, singular, short name or kind (case-insensitive).
func LookupResource(name string) (Resource, bool) {
	for _, r := range Resources {
		if strings.EqualFold(name, r.Plural) || strings.EqualFold(name, r.Kind) {
			return r, true
		}
		for _, s := range r.Short {
			if strings.EqualFold(name, s) {
				return r, true
			}
		}
	}
	return Resource{}, false
}
