package harness

import "fmt"

// Deployment renders the end-to-end suites' workload: a Deployment of the demo image with
// a readiness probe on its named port (so "Ready" means the app answers) and small
// requests; x is the value of its env var X (change it to roll the pods).
func Deployment(name string, replicas int, x string) string {
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
        resources:
          requests: {cpu: 10m, memory: 16Mi}
`, name, replicas, x)
}
