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
