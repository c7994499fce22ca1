package manifest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// jsonAt returns the value at a field path in decoded JSON, or nil.
func jsonAt(v any, path string) any {
	for _, seg := range splitPath(path) {
		switch x := v.(type) {
		case map[string]any:
			v = x[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// parseOne parses a manifest with one object and returns it as decoded JSON, whether or
// not its kind is implemented yet.
func parseOne(t *testing.T, manifest string) any {
	t.Helper()
	objs, problems := parseFile("m.yaml", []byte(manifest), Options{})
	if problems.HasErrors() || len(objs) != 1 {
		t.Fatalf("parse(%q) = %d objects, problems %q", manifest, len(objs), problemLines(problems))
	}
	data, err := Encode(objs[0].obj)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

const containerYAML = `
      containers:
      - name: app
        image: IMAGE
        ports: [{containerPort: 8080}]
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        resources:
          limits: {cpu: "1", memory: 64Mi}
        livenessProbe:
          httpGet: {port: 8080}
        readinessProbe:
          exec: {command: ["true"]}
        volumeMounts: [{name: cfg, mountPath: /cfg}, {name: scratch, mountPath: /tmp}]
      volumes:
      - name: cfg
        configMap: {name: cfg}
      - name: scratch
`

func podManifest(image string) string {
	spec := strings.ReplaceAll(strings.ReplaceAll(containerYAML, "\n    ", "\n"), "IMAGE", image)
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:" + spec
}

func workload(apiVersion, kind, spec string) string {
	return "apiVersion: " + apiVersion + "\nkind: " + kind + "\nmetadata: {name: w}\nspec:\n" + spec +
		"  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec:" +
		strings.ReplaceAll(containerYAML, "IMAGE", "nginx:1.25")
}

const rcYAML = `apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  template:
    metadata: {labels: {app: rc}}
    spec: {containers: [{name: c, image: redis:7}]}
`

const jobYAML = `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    metadata: {labels: {run: j}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox:1.36}]
`

func TestSetDefaults(t *testing.T) {
	pod := podManifest("nginx:1.25")
	deploy := workload("apps/v1", "Deployment", "")
	tmpl := "spec.template.spec."
	tests := []struct {
		manifest string
		field    string
		want     string // JSON
	}{
		{pod, "metadata.namespace", `"default"`},
		{pod, "spec.restartPolicy", `"Always"`},
		{pod, "spec.dnsPolicy", `"ClusterFirst"`},
		{pod, "spec.terminationGracePeriodSeconds", `30`},
		{pod, "spec.schedulerName", `"default-scheduler"`},
		{pod, "spec.enableServiceLinks", `true`},
		{pod, "spec.securityContext", `{}`},
		{pod, "spec.containers[0].imagePullPolicy", `"IfNotPresent"`},
		{podManifest("nginx"), "spec.containers[0].imagePullPolicy", `"Always"`},
		{podManifest("nginx:latest"), "spec.containers[0].imagePullPolicy", `"Always"`},
		{podManifest("registry.local:5000/nginx"), "spec.containers[0].imagePullPolicy", `"Always"`},
		{podManifest("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "spec.containers[0].imagePullPolicy", `"IfNotPresent"`},
		{pod, "spec.containers[0].terminationMessagePath", `"/dev/termination-log"`},
		{pod, "spec.containers[0].terminationMessagePolicy", `"File"`},
		{pod, "spec.containers[0].ports[0].protocol", `"TCP"`},
		{pod, "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion", `"v1"`},
		{pod, "spec.containers[0].resources.requests", `{"cpu":"1","memory":"64Mi"}`},
		{pod, "spec.containers[0].livenessProbe", `{"failureThreshold":3,"httpGet":{"path":"/","port":8080,"scheme":"HTTP"},"periodSeconds":10,"successThreshold":1,"timeoutSeconds":1}`},
		{pod, "spec.containers[0].readinessProbe.timeoutSeconds", `1`},
		{pod, "spec.volumes[0].configMap.defaultMode", `420`},
		{pod, "spec.volumes[1].emptyDir", `{}`},
		{strings.Replace(pod, "spec:", "spec:\n  hostNetwork: true", 1), "spec.containers[0].ports[0].hostPort", `8080`},

		{deploy, "spec.replicas", `1`},
		{deploy, "spec.strategy", `{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"},"type":"RollingUpdate"}`},
		{deploy, "spec.revisionHistoryLimit", `10`},
		{deploy, "spec.progressDeadlineSeconds", `600`},
		{deploy, tmpl + "restartPolicy", `"Always"`},
		{deploy, tmpl + "containers[0].imagePullPolicy", `"IfNotPresent"`},
		{deploy, tmpl + "containers[0].resources.requests", `null`}, // only Pods take requests from limits
		{deploy, tmpl + "enableServiceLinks", `null`},
		{workload("apps/v1", "Deployment", "  strategy: {type: Recreate}\n"), "spec.strategy", `{"type":"Recreate"}`},
		{workload("apps/v1", "Deployment", "  replicas: 0\n"), "spec.replicas", `0`},

		{workload("apps/v1", "ReplicaSet", ""), "spec.replicas", `1`},
		{rcYAML, "spec.selector", `{"app":"rc"}`},
		{rcYAML, "metadata.labels", `{"app":"rc"}`},

		{workload("apps/v1", "StatefulSet", "  serviceName: w\n"), "spec.podManagementPolicy", `"OrderedReady"`},
		{workload("apps/v1", "StatefulSet", "  serviceName: w\n"), "spec.updateStrategy", `{"type":"RollingUpdate"}`},
		{workload("apps/v1", "StatefulSet", "  serviceName: w\n  updateStrategy: {rollingUpdate: {}}\n"), "spec.updateStrategy", `{"rollingUpdate":{"partition":0},"type":"RollingUpdate"}`},
		{workload("apps/v1", "StatefulSet", "  serviceName: w\n"), "spec.persistentVolumeClaimRetentionPolicy", `{"whenDeleted":"Retain","whenScaled":"Retain"}`},
		{workload("apps/v1", "StatefulSet", "  serviceName: w\n"), "spec.revisionHistoryLimit", `10`},
		{workload("apps/v1", "StatefulSet", "  serviceName: w\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n"),
			"spec.volumeClaimTemplates[0].spec.volumeMode", `"Filesystem"`},
		{workload("apps/v1", "DaemonSet", ""), "spec.updateStrategy", `{"rollingUpdate":{"maxSurge":0,"maxUnavailable":1},"type":"RollingUpdate"}`},
		{workload("apps/v1", "DaemonSet", ""), "spec.revisionHistoryLimit", `10`},

		{jobYAML, "spec.completions", `1`},
		{jobYAML, "spec.parallelism", `1`},
		{jobYAML, "spec.backoffLimit", `6`},
		{jobYAML, "spec.completionMode", `"NonIndexed"`},
		{jobYAML, "metadata.labels", `{"run":"j"}`},
		{strings.Replace(jobYAML, "spec:\n  template", "spec:\n  completions: 5\n  template", 1), "spec.parallelism", `1`},
		{`apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox:1.36}]
`, "spec", `{"concurrencyPolicy":"Allow","failedJobsHistoryLimit":1,"jobTemplate":{"metadata":{},"spec":{"backoffLimit":6,"completionMode":"NonIndexed","completions":1,"parallelism":1,"podReplacementPolicy":"TerminatingOrFailed","suspend":false,"template":{"metadata":{},"spec":{"containers":[{"image":"busybox:1.36","imagePullPolicy":"IfNotPresent","name":"c","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"OnFailure","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}},"schedule":"*/5 * * * *","successfulJobsHistoryLimit":3,"suspend":false}`},

		{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: w}\n  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP, targetPort: 5353}]\n",
			"spec", `{"internalTrafficPolicy":"Cluster","ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":80},{"name":"dns","port":53,"protocol":"UDP","targetPort":5353}],"selector":{"app":"w"},"sessionAffinity":"None","type":"ClusterIP"}`},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: NodePort\n  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: http}]\n",
			"spec", `{"externalTrafficPolicy":"Cluster","internalTrafficPolicy":"Cluster","ports":[{"port":80,"protocol":"TCP","targetPort":"http"}],"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":10800}},"type":"NodePort"}`},

		{"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: YQ==, b: YQ==}\nstringData: {b: bee, c: sea}\n", "data", `{"a":"YQ==","b":"YmVl","c":"c2Vh"}`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {c: sea}\n", "stringData", `null`},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "type", `"Opaque"`},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n", "data", `{"a":"b"}`},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "metadata.labels", `{"kubernetes.io/metadata.name":"shop"}`},
		{"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n", "spec.volumeMode", `"Filesystem"`},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /srv}}\n", "spec.persistentVolumeReclaimPolicy", `"Retain"`},
		{"apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /srv}}\n", "spec.hostPath.type", `""`},
	}
	for _, tt := range tests {
		obj := parseOne(t, tt.manifest)
		got, _ := json.Marshal(jsonAt(obj, tt.field))
		if string(got) != tt.want {
			kind := jsonAt(obj, "kind")
			t.Errorf("SetDefaults(%v).%s = %s; want %s", kind, tt.field, got, tt.want)
		}
	}
}
