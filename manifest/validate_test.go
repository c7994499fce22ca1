package manifest

import (
	"reflect"
	"strings"
	"testing"
)

// pod builds a Pod manifest from the YAML of its spec (indented by two spaces).
func pod(spec string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n" + spec
}

// deployment builds a Deployment manifest from the YAML of its spec.
func deployment(spec string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n" + spec
}

const oneContainer = "  containers: [{name: c, image: busybox:1.36}]\n"

const dTemplate = `  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d, tier: web}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
`

// cronJobYAML builds a CronJob manifest with a schedule (quoted YAML) and a time zone.
func cronJobYAML(schedule, tz string) string {
	m := "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: " + schedule + "\n"
	if tz != "" {
		m += "  timeZone: " + tz + "\n"
	}
	return m + "  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox:1.36}]}}}}\n"
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     []string // "field: severity: message (line N)"
	}{
		{"valid pod", pod(oneContainer), nil},
		{"valid deployment", deployment(dTemplate), nil},
		{"name", strings.Replace(pod(oneContainer), "name: p", "name: Web_1", 1), []string{
			`metadata.name: error: invalid value "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 3)`}},
		{"generateName", strings.Replace(pod(oneContainer), "{name: p}", "{generateName: p-}", 1), []string{
			`metadata.generateName: error: not supported by skiff: a stable name is needed to converge and prune; set metadata.name (line 3)`,
			`metadata.name: error: name is required (line 3)`}},
		{"label value", strings.Replace(pod(oneContainer), "{name: p}", "{name: p, labels: {app: -x}}", 1), []string{
			`metadata.labels: error: invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') (line 3)`}},
		{"no containers", pod("  containers: []\n"), []string{`spec.containers: error: at least one container is required (line 5)`}},
		{"duplicate container names", pod("  initContainers: [{name: c, image: busybox:1.36}]\n" + oneContainer), []string{
			`spec.containers[0].name: error: duplicate container name "c" (line 6)`}},
		{"ports", pod(`  containers:
  - name: c
    image: busybox:1.36
    ports: [{name: http, containerPort: 70000}, {name: http, containerPort: 81}, {containerPort: 82, hostPort: 80}, {containerPort: 83, hostPort: 80}]
`), []string{
			`spec.containers[0].ports[0].containerPort: error: invalid value 70000: must be between 1 and 65535, inclusive (line 8)`,
			`spec.containers[0].ports[1].name: error: duplicate port name "http" (line 8)`,
			`spec.containers[0].ports[3].hostPort: error: duplicate hostPort 80/TCP in the pod (line 8)`}},
		{"env", pod(`  containers:
  - name: c
    image: busybox:1.36
    env:
    - {name: "A=B", value: x}
    - name: B
      value: x
      valueFrom: {secretKeyRef: {name: s, key: k}}
    - name: C
      valueFrom: {fieldRef: {fieldPath: status.phase}}
    envFrom: [{prefix: P_}]
`), []string{
			`spec.containers[0].env[0].name: error: invalid value "A=B": a valid environment variable name must consist only of printable ASCII characters other than '=' (line 9)`,
			`spec.containers[0].env[1].valueFrom: error: may not be given together with value (line 12)`,
			`spec.containers[0].env[2].valueFrom.fieldRef.fieldPath: error: unsupported value "status.phase": must be one of "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs" (line 14)`,
			`spec.containers[0].envFrom[0]: error: give exactly one of configMapRef or secretRef (line 15)`}},
		{"volumes and mounts", pod(`  volumes:
  - {name: data, emptyDir: {}}
  - {name: data, hostPath: {path: /srv/../etc}}
  containers:
  - name: c
    image: busybox:1.36
    volumeMounts: [{name: data, mountPath: /a}, {name: cache, mountPath: /a}]
`), []string{
			`spec.volumes[1].name: error: duplicate volume name "data" (line 7)`,
			`spec.volumes[1].hostPath.path: error: invalid value "/srv/../etc": must not contain '..' (line 7)`,
			`spec.containers[0].volumeMounts[1].name: error: volume "cache" not found: no volume of the pod has that name (line 11)`,
			`spec.containers[0].volumeMounts[1].mountPath: error: duplicate mountPath "/a" (line 11)`}},
		{"probes", pod(`  containers:
  - name: c
    image: busybox:1.36
    ports: [{name: web, containerPort: 80}]
    livenessProbe:
      exec: {command: [ls]}
      tcpSocket: {port: 80}
      successThreshold: 2
    readinessProbe:
      periodSeconds: 5
    startupProbe:
      httpGet: {port: admin}
`), []string{
			`spec.containers[0].livenessProbe: error: a probe may have only one handler: exec, httpGet, tcpSocket or grpc (line 9)`,
			`spec.containers[0].livenessProbe.successThreshold: error: invalid value 2: must be 1 for liveness and startup probes (line 12)`,
			`spec.containers[0].readinessProbe: error: a probe needs a handler: exec, httpGet, tcpSocket or grpc (line 13)`,
			`spec.containers[0].startupProbe.httpGet.port: error: port "admin" not found: the container has no port with that name (line 16)`}},
		{"restart policy and resources", pod(`  restartPolicy: Sometimes
  containers:
  - name: c
    image: busybox:1.36
    resources: {requests: {memory: 1Gi}, limits: {memory: 512Mi}}
`), []string{
			`spec.restartPolicy: error: unsupported value "Sometimes": must be one of "Always", "OnFailure", "Never" (line 5)`,
			`spec.containers[0].resources.requests[memory]: error: invalid value "1Gi": must be less than or equal to the memory limit of 512Mi (line 9)`}},
		{"bad quantity", pod("  containers: [{name: c, image: busybox:1.36, resources: {limits: {memory: 1GB}}}]\n"), []string{
			`spec.containers[0].resources.limits[memory]: error: invalid quantity "1GB": write a number with an optional suffix, such as 500m, 2, 128Mi or 1G (line 5)`}},
		{"material fields are refused", pod(`  hostPID: true
  containers:
  - name: c
    image: busybox:1.36
    resources: {limits: {nvidia.com/gpu: 1}}
`), []string{
			`spec.hostPID: error: not supported by skiff: the pod would not share the node's process namespace (line 5)`,
			`spec.containers[0].resources.limits[nvidia.com/gpu]: error: not supported by skiff: extended resources (GPUs, hugepages, devices) cannot be provided; the container would run without them (line 9)`}},
		{"zero values change nothing", pod("  hostPID: false\n  affinity: {}\n  priority: null\n" + oneContainer), nil},
		{"unknown volume type", pod("  volumes: [{name: v, nfs: {server: nas, path: /x}}]\n" + oneContainer), []string{
			`spec.volumes[0].nfs: error: not supported by skiff: only emptyDir, hostPath, configMap, secret, downwardAPI, projected, gitRepo and persistentVolumeClaim volumes are mounted; the pod would run without this one (line 5)`}},

		{"replicas", deployment("  replicas: -1\n" + dTemplate), []string{`spec.replicas: error: invalid value -1: must be greater than or equal to 0 (line 5)`}},
		{"no selector", deployment(strings.Replace(dTemplate, "  selector: {matchLabels: {app: d}}\n", "", 1)), []string{
			`spec.selector: error: selector is required (apps/v1 does not take it from the template labels) (line 4)`}},
		{"empty selector", deployment(strings.Replace(dTemplate, "{matchLabels: {app: d}}", "{}", 1)), []string{
			`spec.selector: error: empty selector is invalid for a Deployment: it would select every pod (line 5)`}},
		{"matchExpressions matching", deployment(strings.Replace(dTemplate, "{matchLabels: {app: d}}", "{matchExpressions: [{key: tier, operator: In, values: [web, api]}, {key: canary, operator: DoesNotExist}]}", 1)), nil},
		{"matchExpressions not matching", deployment(strings.Replace(dTemplate, "{matchLabels: {app: d}}", "{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}", 1)), []string{
			`spec.template.metadata.labels: error: selector does not match template labels (selector tier notin (web); labels app=d,tier=web) (line 7)`}},
		{"bad selector operator", deployment(strings.Replace(dTemplate, "{matchLabels: {app: d}}", "{matchExpressions: [{key: tier, operator: Near}]}", 1)), []string{
			`spec.selector.matchExpressions[0].operator: error: invalid value: "Near": not a valid selector operator (line 5)`}},
		{"template restart policy", deployment(strings.Replace(dTemplate, "    spec:\n", "    spec:\n      restartPolicy: Never\n", 1)), []string{
			`spec.template.spec.restartPolicy: error: unsupported value "Never": must be "Always" (line 9)`}},
		{"rolling update that cannot progress", deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}\n" + dTemplate), []string{
			`spec.strategy.rollingUpdate.maxUnavailable: error: may not be 0 when maxSurge is 0: the rollout could never progress (line 5)`}},
		{"recreate with rolling update", deployment("  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n" + dTemplate), []string{
			`spec.strategy.rollingUpdate: error: may not be given when type is Recreate (line 5)`}},
		{"replication controller selector", `apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  selector: {app: rc}
  template:
    metadata: {labels: {app: other}}
    spec: {containers: [{name: c, image: redis:7}]}
`, []string{`spec.template.metadata.labels: error: selector does not match template labels (selector app=rc; labels app=other) (line 7)`}},
		{"job restart policy and indexed completion", `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  completionMode: Indexed
  template:
    spec: {containers: [{name: c, image: busybox:1.36}]}
`, []string{
			`spec.completionMode: error: not supported by skiff: completionMode Indexed; use NonIndexed (line 5)`,
			`spec.template.spec.restartPolicy: error: unsupported value "Always": must be one of "OnFailure", "Never" (line 7)`}},
		{"cron schedule", `apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec:
  schedule: "every hour"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox:1.36}]}}}}
`, []string{
			`spec.schedule: error: invalid value "every hour": a schedule has five fields (minute hour day-of-month month day-of-week), got 2 (line 5)`}},
		{"cron schedule out of range", cronJobYAML(`"61 * * * *"`, ""), []string{
			`spec.schedule: error: invalid value "61 * * * *": end of range (61) above maximum (59): 61 (line 5)`}},
		{"valid cron job with a time zone", cronJobYAML(`"0 9 * * 1-5"`, "Asia/Seoul"), nil},
		{"cron descriptor", cronJobYAML(`"@hourly"`, ""), nil},
		{"cron time zone", cronJobYAML(`"0 9 * * *"`, "Mars/Olympus"), []string{
			`spec.timeZone: error: invalid value "Mars/Olympus": unknown time zone (line 6)`}},
		{"cron local time zone", cronJobYAML(`"0 9 * * *"`, "Local"), []string{
			`spec.timeZone: error: invalid value "Local": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones (line 6)`}},
		{"job fields", `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  podReplacementPolicy: Sometimes
  managedBy: example.com/queue
  podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {operator: In, values: [42]}}]}
  manualSelector: true
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: busybox:1.36}]}
`, []string{
			`spec.podReplacementPolicy: error: unsupported value "Sometimes": must be one of "TerminatingOrFailed", "Failed" (line 5)`,
			`spec.managedBy: error: not supported by skiff: managedBy "example.com/queue": no other controller runs Jobs in skiff; leave it unset (line 6)`,
			`spec.podFailurePolicy: error: not supported by skiff: pod failure rules are not evaluated; every failed pod would count toward backoffLimit (line 7)`,
			`spec.manualSelector: unsupported: field ignored: skiff selects a Job's pods by the controller-uid label it gives them (line 8)`}},
		{"job name fits its pods' job-name label", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: " + strings.Repeat("j", 64) + "}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox:1.36}]}}}\n", []string{
			`metadata.name: error: invalid value "` + strings.Repeat("j", 64) + `": a Job name must be no more than 63 characters (line 3)`}},
		{"valid daemon set", `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: busybox:1.36}]}
`, nil},
		{"service ports", `apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports:
  - {name: web, port: 80, targetPort: http_web, nodePort: 30080}
  - {name: web, port: 443}
  - {port: 0}
`, []string{
			`spec.ports[0].targetPort: error: invalid value "http_web": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-) (line 6)`,
			`spec.ports[0].nodePort: error: may only be set when type is NodePort or LoadBalancer (line 6)`,
			`spec.ports[1].name: error: duplicate port name "web" (line 7)`,
			`spec.ports[2].name: error: name is required when a Service has more than one port (line 8)`,
			`spec.ports[2].port: error: invalid value 0: must be between 1 and 65535, inclusive (line 8)`}},
		{"service types", `apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  type: ExternalName
`, []string{`spec.externalName: error: externalName is required for type ExternalName (line 4)`}},
		{"headless node port", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, clusterIP: None, ports: [{port: 80}]}\n", []string{
			`spec.clusterIP: error: clusterIP None (headless) needs type ClusterIP, not NodePort (line 4)`}},
		{"service name is a DNS-1035 label", "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {ports: [{port: 80}]}\n", []string{
			`metadata.name: error: invalid value "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?') (line 3)`}},
		{"ingress", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - host: 10.0.0.1
    http:
      paths:
      - path: api
        backend: {service: {name: api, port: {number: 80}}}
`, []string{
			`spec.rules[0].host: error: invalid value "10.0.0.1": must be a DNS name, not an IP address (line 6)`,
			`spec.rules[0].http.paths[0].pathType: error: pathType is required: Exact, Prefix or ImplementationSpecific (line 9)`,
			`spec.rules[0].http.paths[0].path: error: invalid value "api": must be an absolute path (line 9)`}},
		{"ingress paths", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - http:
      paths:
      - {path: /a//b, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /a/.., pathType: Exact, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /a%2Fb, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /a//b/.., pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /ok/, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
`, []string{
			`spec.rules[0].http.paths[0].path: error: invalid value "/a//b": must not contain '//' (line 8)`,
			`spec.rules[0].http.paths[1].path: error: invalid value "/a/..": cannot end with '/..' (line 9)`,
			`spec.rules[0].http.paths[2].path: error: invalid value "/a%2Fb": must not contain '%2F' (line 10)`}},
		{"tls secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: Y2VydA==}\n", []string{
			`data[tls.key]: error: a Secret of type kubernetes.io/tls needs key "tls.key" (line 5)`}},
		{"secret data is base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: hunter2!}\n", []string{
			`data[password]: error: value is not valid base64 (for plain text in a Secret, use stringData) (line 4)`}},
		{"config map key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a b\": x}\n", []string{
			`data[a b]: error: invalid value "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+') (line 4)`}},
		{"config map value must be a string", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {port: 8080}\n", []string{
			`data[port]: error: expected a string, got integer 8080; quote it: "8080" (line 4)`}},
		{"claim needs storage", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteOnce]}\n", []string{
			`spec.resources.requests.storage: error: a storage request is required (line 4)`}},
		{"claim with a zero request and a block volume", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteOnce], volumeMode: Block, resources: {requests: {storage: \"0\"}}}\n", []string{
			`spec.resources.requests.storage: error: invalid value "0": must be greater than 0 (line 4)`,
			`spec.volumeMode: error: not supported by skiff: volumeMode Block; skiff provides filesystem volumes only (line 4)`}},
		{"volume needs capacity, access modes and a source", "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {storageClassName: manual}\n", []string{
			`spec.capacity.storage: error: capacity.storage is required (line 4)`,
			`spec.accessModes: error: at least one access mode is required (line 4)`,
			`spec: error: a volume source is required: hostPath or local (line 4)`}},
		{"local volume needs node affinity", "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], local: {path: /mnt/disk}}\n", []string{
			`spec.nodeAffinity: error: a local volume needs nodeAffinity.required: the node that has the directory (line 4)`}},
		{"hostPath volume", "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /srv/v}}\n", nil},
		{"stateful set mounts its claim templates", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx:1.25, volumeMounts: [{name: www, mountPath: /www}]}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`, nil},
		{"stateful set needs serviceName and distinct claim names", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx:1.25, volumeMounts: [{name: www, mountPath: /www}]}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  - metadata: {name: Logs}
    spec: {accessModes: [ReadWriteOnce]}
`, []string{
			`spec.serviceName: error: serviceName is required: the headless Service that gives the pods their DNS names (NAME-0.SERVICE) (line 4)`,
			`spec.volumeClaimTemplates[1].metadata.name: error: duplicate volume claim template name "www" (line 13)`,
			`spec.volumeClaimTemplates[2].metadata.name: error: invalid value "Logs": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?') (line 15)`,
			`spec.volumeClaimTemplates[2].spec.resources.requests.storage: error: a storage request is required (line 16)`}},
		{"stateful set name leaves room for its pods' labels", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: " + strings.Repeat("a", 53) + "}\nspec:\n  serviceName: web\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx:1.25}]}\n", []string{
			`metadata.name: error: invalid value "` + strings.Repeat("a", 53) + `": a StatefulSet name must be no more than 52 characters (line 3)`}},
	}
	for _, tt := range tests {
		r := Parse("m.yaml", []byte(tt.manifest), Options{})
		var got []string
		for _, p := range r.Problems {
			s := p.String()
			// Keep field: severity: message (line N).
			s = s[strings.Index(s, ": ")+2:]
			if p.Kind != "" || p.Name != "" {
				s = s[strings.Index(s, ": ")+2:]
			}
			got = append(got, s)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%s) problems =\n\t%s\nwant\n\t%s", tt.name, strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
		}
	}
}
