package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

func configMap(greeting string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  greeting: %q
  motd.txt: "motd: %s"
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {token: s3cr3t}
`, greeting, greeting)
}

// featuresPod has two containers sharing an emptyDir and the network, a hostPort, env from
// a ConfigMap, a Secret and the downward API, and volumes of every kind: configMap (whole and
// items with a mode), secret, downwardAPI, emptyDir on disk and in memory, an allowed
// hostPath and a gitRepo.
const featuresPod = `apiVersion: v1
kind: Pod
metadata:
  name: features
  namespace: default
  labels: {app: features, tier: edge}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/skiff/demo:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 8080, hostPort: %[1]d}]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: sec, key: token}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    readinessProbe:
      httpGet: {path: /readyz, port: 8080}
      periodSeconds: 1
    volumeMounts:
    - {name: config, mountPath: /etc/config}
    - {name: shared, mountPath: /shared}
    - {name: host, mountPath: /host}
    - {name: secret, mountPath: /etc/secret}
  - name: side
    image: localhost/skiff/demo:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c]
    args: ['echo from-side > hello && exec sleep 3600']
    workingDir: /shared
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: items, mountPath: /items}
    - {name: downward, mountPath: /downward}
    - {name: mem, mountPath: /mem}
    - {name: git, mountPath: /git}
  volumes:
  - name: config
    configMap: {name: cfg}
  - name: shared
    emptyDir: {}
  - name: host
    hostPath: {path: %[2]q, type: DirectoryOrCreate}
  - name: secret
    secret: {secretName: sec}
  - name: items
    configMap: {name: cfg, items: [{key: greeting, path: sub/greeting.txt, mode: 0400}]}
  - name: downward
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
  - name: git
    gitRepo: {repository: %[3]q, revision: main, directory: .}
`

// TestPodFeatures: hostPort on 127.0.0.1, env from configMapKeyRef/secretKeyRef/fieldRef,
// an emptyDir shared by two containers that also share localhost, a hostPath under
// --host-path-allow, a Secret volume in tmpfs, configMap items with a mode, downwardAPI,
// emptyDir in memory, gitRepo, workingDir and args, a pod in another namespace, and a ConfigMap
// volume that changes in place after a commit. The agent reads a local path (not a URL)
// and only --path deploy: a broken manifest beside it is never read.
func TestPodFeatures(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	allowed := filepath.Join(t.TempDir(), "allowed")
	hostDir := filepath.Join(allowed, "data")
	port := harness.FreePort(t)
	repo := gitrepo.New(t)
	repo.Write("deploy/config.yaml", configMap("hello"))
	content := gitrepo.New(t)
	content.Write("hello.txt", "from git\n")
	content.Commit("content")
	repo.Write("deploy/pod.yaml", fmt.Sprintf(featuresPod, port, hostDir, content.URL()))
	repo.Write("deploy/shop/pod.yaml", strings.Replace(demoPod("other-ns", "", "env: [{name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]"),
		"  name: other-ns\n", "  name: other-ns\n  namespace: shop\n", 1))
	repo.Write("not-deployed.yaml", "this: [is not valid\n")
	head := repo.Commit("features")
	a := harness.StartAgent(t, repo.Dir(), map[string]string{"host-path-allow": allowed, "path": "deploy"})
	a.WaitLive(t, 60*time.Second, head)
	pods := a.WaitPods(t, 90*time.Second, "app=features", 1, nil)
	pod := pods[0]
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	t.Run("HostPort", func(t *testing.T) {
		harness.Eventually(t, 20*time.Second, func() error {
			body, err := harness.HTTPGet(base + "/")
			if err != nil {
				return err
			}
			if !strings.Contains(body, "features") {
				return fmt.Errorf("GET %s/ = %q; want the pod's hostname features", base, body)
			}
			return nil
		})
	})

	t.Run("EnvFrom", func(t *testing.T) {
		for _, c := range []struct{ name, want string }{
			{"GREETING", "hello"},
			{"TOKEN", "s3cr3t"},
			{"POD_NAME", "features"},
			{"POD_NS", "default"},
			{"TIER", "edge"},
			{"POD_IP", pod.Status.PodIP},
			{"NODE", a.Name},
		} {
			got, err := harness.HTTPGet(base + "/env?name=" + c.name)
			if err != nil || strings.TrimSpace(got) != c.want {
				t.Errorf("env %s = %q, %v; want %q", c.name, strings.TrimSpace(got), err, c.want)
			}
		}
	})

	t.Run("EmptyDirAndLocalhostShared", func(t *testing.T) {
		harness.Eventually(t, 20*time.Second, func() error {
			got, err := harness.HTTPGet(base + "/file?path=/shared/hello")
			if err != nil || got != "from-side\n" {
				return fmt.Errorf("app reads /shared/hello = %q, %v; want what the side container wrote", got, err)
			}
			return nil
		})
		r := a.Run(t, "exec", "features", "-c", "side", "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/")
		if r.Code != 0 || !strings.Contains(r.Stdout, "features") {
			t.Errorf("side container GET localhost:8080 = exit %d %q %q; want the app container's answer", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("HostPathAllowed", func(t *testing.T) {
		a.MustRun(t, "exec", "features", "-c", "app", "--", "sh", "-c", "echo via-pod > /host/from-pod")
		b, err := os.ReadFile(filepath.Join(hostDir, "from-pod"))
		if err != nil || string(b) != "via-pod\n" {
			t.Errorf("host file written through the hostPath volume = %q, %v; want via-pod", b, err)
		}
	})

	t.Run("SecretVolumeInTmpfsAndHidden", func(t *testing.T) {
		got, err := harness.HTTPGet(base + "/file?path=/etc/secret/token")
		if err != nil || got != "s3cr3t" {
			t.Errorf("mounted secret token = %q, %v; want s3cr3t", got, err)
		}
		mounts := a.MustRun(t, "exec", "features", "-c", "app", "--", "cat", "/proc/mounts")
		tmpfs := false
		for _, l := range strings.Split(mounts, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[1] == "/etc/secret" && f[2] == "tmpfs" {
				tmpfs = true
			}
		}
		if !tmpfs {
			t.Errorf("/etc/secret is not a tmpfs mount in the container:\n%s", mounts)
		}
		if out := a.MustRun(t, "get", "secrets", "-o", "json"); strings.Contains(out, "s3cr3t") || strings.Contains(out, "czNjcjN0") {
			t.Errorf("skiff get secrets -o json shows the secret's value:\n%s", out)
		}
	})

	t.Run("MoreVolumesAndWorkingDir", func(t *testing.T) {
		for _, c := range []struct{ cmd, want string }{
			{"pwd", "/shared"},
			{"cat /items/sub/greeting.txt", "hello"},
			{"stat -L -c %a /items/sub/greeting.txt", "400"},
			{"grep tier /downward/labels", `tier="edge"`},
			{`awk '$2=="/mem" {print $3; if ($4 ~ /size=16384k/) print "sizeLimit"}' /proc/mounts`, "tmpfs\nsizeLimit"},
			{"cat /git/hello.txt", "from git"},
			{"touch /git/new 2>/dev/null && echo writable || echo read-only", "read-only"},
		} {
			r := a.Run(t, "exec", "features", "-c", "side", "--", "sh", "-c", c.cmd)
			if strings.TrimSpace(r.Stdout) != c.want {
				t.Errorf("in container side, %s = %q (exit %d, %q); want %q", c.cmd, strings.TrimSpace(r.Stdout), r.Code, r.Stderr, c.want)
			}
		}
	})

	t.Run("OtherNamespace", func(t *testing.T) {
		harness.Eventually(t, 60*time.Second, func() error {
			r := a.Run(t, "get", "pods", "-n", "shop", "-o", "name")
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != "pod/other-ns" {
				return fmt.Errorf("skiff get pods -n shop -o name = %q %q; want pod/other-ns", r.Stdout, r.Stderr)
			}
			return nil
		})
		if out := a.MustRun(t, "get", "pods", "-o", "name"); strings.Contains(out, "other-ns") {
			t.Errorf("skiff get pods (namespace default) lists a pod of namespace shop: %s", out)
		}
		all := a.MustRun(t, "get", "pods", "-A")
		for _, want := range []string{"shop", "other-ns", "default", "features"} {
			if !strings.Contains(all, want) {
				t.Errorf("skiff get pods -A lacks %q:\n%s", want, all)
			}
		}
		harness.Eventually(t, 60*time.Second, func() error {
			r := a.Run(t, "exec", "-n", "shop", "other-ns", "--", "sh", "-c", "echo $NS")
			if r.Stdout != "shop\n" || r.Code != 0 {
				return fmt.Errorf("skiff exec -n shop other-ns -- sh -c 'echo $NS' = %q exit %d %q; want shop", r.Stdout, r.Code, r.Stderr)
			}
			return nil
		})
		if r := a.Run(t, "logs", "-n", "shop", "other-ns"); r.Code != 0 || !strings.Contains(r.Stdout, "listening") {
			t.Errorf("skiff logs -n shop other-ns = exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("ConfigMapVolumeUpdatesInPlace", func(t *testing.T) {
		got, err := harness.HTTPGet(base + "/file?path=/etc/config/greeting")
		if err != nil || got != "hello" {
			t.Fatalf("mounted greeting = %q, %v; want hello", got, err)
		}
		cs := harness.ContainerStatus(&pod, "app")
		repo.Write("deploy/config.yaml", configMap("bonjour"))
		next := repo.Commit("greeting: bonjour")
		if code, msg := a.Hook(t, nil, nil); code != 202 {
			t.Fatalf("webhook = %d %s", code, msg)
		}
		a.WaitLive(t, 15*time.Second, next)
		harness.Eventually(t, 60*time.Second, func() error {
			for file, want := range map[string]string{"greeting": "bonjour", "motd.txt": "motd: bonjour"} {
				got, err := harness.HTTPGet(base + "/file?path=/etc/config/" + file)
				if err != nil || got != want {
					return fmt.Errorf("mounted %s = %q, %v; want %q", file, got, err, want)
				}
			}
			return nil
		})
		// Kubernetes' atomic swap: the keys are symlinks into ..data.
		if r := a.Run(t, "exec", "features", "-c", "app", "--", "readlink", "/etc/config/greeting"); strings.TrimSpace(r.Stdout) != "..data/greeting" {
			t.Errorf("readlink /etc/config/greeting = %q (exit %d); want ..data/greeting", r.Stdout, r.Code)
		}
		p := a.WaitPods(t, 10*time.Second, "app=features", 1, nil)[0]
		now := harness.ContainerStatus(&p, "app")
		if p.UID != pod.UID || now.ContainerID != cs.ContainerID || now.RestartCount != 0 {
			t.Errorf("pod %s/%s container %s restarts %d after the ConfigMap change; want the same pod %s and container %s, not restarted",
				p.Name, p.UID, now.ContainerID, now.RestartCount, pod.UID, cs.ContainerID)
		}
		// Env is read once at start, as in Kubernetes.
		if got, _ := harness.HTTPGet(base + "/env?name=GREETING"); strings.TrimSpace(got) != "hello" {
			t.Errorf("env GREETING after the change = %q; want hello (env does not follow a ConfigMap)", got)
		}
	})
}
