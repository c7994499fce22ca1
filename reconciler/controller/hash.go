package controller

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// ComputeHash returns the pod-template-hash of a Deployment's template: fnv32a over the
// template, plus the collision count when set, rendered with Kubernetes' SafeEncodeString.
// Kubernetes hashes a spew dump of the Go value; skiff hashes its JSON encoding (struct
// field order, sorted map keys), which is as stable and needs no extra dependency, so the
// names differ from a Kubernetes cluster's but never change between skiff versions that
// agree on the API types.
func ComputeHash(template *corev1.PodTemplateSpec, collisionCount *int32) string {
	var extra []byte
	if collisionCount != nil {
		extra = binary.LittleEndian.AppendUint32(make([]byte, 0, 8), uint32(*collisionCount))
		extra = append(extra, 0, 0, 0, 0)
	}
	return hashObject(template, extra)
}

// specHash identifies a bare pod's spec, to replace the pod when git changes it.
func specHash(spec *corev1.PodSpec) string { return hashObject(spec, nil) }

func hashObject(v any, extra []byte) string {
	h := fnv.New32a()
	b, err := json.Marshal(v)
	if err != nil { // API types always encode; keep going with what there is
		b = []byte(fmt.Sprintf("%#v", v))
	}
	h.Write(b)
	h.Write(extra)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}
