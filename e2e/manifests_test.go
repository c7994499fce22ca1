package e2e

import (
	"fmt"
	"strings"
)

// demoPod is a bare Pod named name (label app=name) with one container "app" running the
// demo image; podSpec and container are extra YAML lines for the pod's spec and the
// container, written unindented. The grace period is 1 s unless podSpec sets one.
func demoPod(name, podSpec, container string) string {
	if !strings.Contains(podSpec, "terminationGracePeriodSeconds") {
		podSpec = strings.TrimSpace("terminationGracePeriodSeconds: 1\n" + podSpec)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: %s}
spec:
%s  containers:
  - name: app
    image: localhost/skiff/demo:latest
    imagePullPolicy: IfNotPresent
%s`, name, name, indent(podSpec, "  "), indent(container, "    "))
}

// indent prefixes each line of s and ends it with a newline ("" stays "").
func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix) + "\n"
}

// webDeployment is a Deployment of the demo app with a readiness probe; x is its env var X.
func webDeployment(name string, replicas int, x string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: localhost/skiff/demo:latest
        imagePullPolicy: IfNotPresent
        env: [{name: X, value: %[3]q}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /readyz, port: http}
          periodSeconds: 1
`, name, replicas, x)
}
