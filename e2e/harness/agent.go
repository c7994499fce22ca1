// Package harness runs real `skiff agent` processes on the test Podman service and drives
// them through the skiff CLI, the agent's HTTP endpoints and the podman CLI, for the
// end-to-end tests (package e2e) and the benchmark (package bench).
//
// It reads what the binary prints, not the product's Go types, so the suite builds and runs
// against any bin/skiff, whatever state the product packages are in.
package harness

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/testenv"
)

// Bin is the binary under test: $SKIFF_BIN, or one built by TestMain.
var Bin string

// FindSkiff sets Bin from SKIFF_BIN or builds ./cmd/skiff once into a temporary
// directory (the module's GOFLAGS carry the Podman build tags).
func FindSkiff() (cleanup func(), err error) {
	if b := os.Getenv("SKIFF_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("SKIFF_BIN: %w", err)
		}
		Bin = b
		return func() {}, nil
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		return nil, err
	}
	Bin = filepath.Join(dir, "skiff")
	cmd := exec.Command("go", "build", "-o", Bin, "./cmd/skiff")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("go build ./cmd/skiff: %v\n%s", err, out)
	}
	return func() { os.RemoveAll(dir) }, nil
}

// Eventually calls f until it returns nil or timeout passes, then fails the test with f's
// last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := 200 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(tick) // a poll interval between checks of a condition, not a wait for an outcome
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// NodeName is a DNS-1123 node name unique to this test run.
func NodeName(t testing.TB) string {
	base := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	base = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(base, "-")
	if len(base) > 24 {
		base = base[:24]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "e2e-" + strings.Trim(base, "-") + "-" + hex.EncodeToString(b[:])
}

// Agent is one `skiff agent` process with its own node name, data dir and ports.
type Agent struct {
	Name    string
	DataDir string
	API     string // host:port
	Server  string // https://host:port
	flags   map[string]string
	extra   []string // repeatable flags, as given
	logPath string
	proc    *os.Process
	done    chan struct{}
}

// StartAgent starts an agent on the test's Podman service syncing repo; flags (as
// "--name=value" pairs in a map) override the defaults: branch main, 1 h poll (tests
// trigger syncs), loopback ports. Cleanup stops it, removes every pod labelled with its node
// name and unmounts what it left under its data dir.
func StartAgent(t testing.TB, repo string, flags map[string]string, extra ...string) *Agent {
	t.Helper()
	testenv.DemoImage(t)
	base := t.TempDir()
	a := &Agent{
		Name:    NodeName(t),
		DataDir: filepath.Join(base, "data"),
		API:     fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		logPath: filepath.Join(base, "agent.log"),
		extra:   extra,
	}
	a.Server = "https://" + a.API
	a.flags = map[string]string{
		"name":     a.Name,
		"data-dir": a.DataDir,
		"repo":     repo,
		"ref":      "main",
		"poll":     "1h",
		"podman":   testenv.Podman(t),
		"api":      a.API,
		"raft":     fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		// Cluster DNS and ingress listen too; on loopback ports of their own, so agents
		// running side by side (and other work on this machine) do not collide on 53/80/443.
		"dns":   fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"http":  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"https": fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		// Agents here share the machine's network namespace and one Podman: no host routes,
		// no nftables, pods on Podman's own network (the multi-node rig tests netplane).
		"netplane": "false",
		"network":  "podman",
	}
	for k, v := range flags {
		if v == "" {
			delete(a.flags, k)
		} else {
			a.flags[k] = v
		}
	}
	t.Cleanup(func() {
		a.Stop()
		RemoveNodePods(t, a.Name)
		unmountUnder(a.DataDir)
		if t.Failed() {
			t.Logf("agent %s log (tail):\n%s", a.Name, tailLog(a.logPath, 80))
		}
	})
	a.start(t)
	return a
}

// start launches the agent process and waits until /readyz answers 200 (the node loop runs).
func (a *Agent) start(t testing.TB) {
	t.Helper()
	args := []string{"agent"}
	keys := make([]string, 0, len(a.flags))
	for k := range a.flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--"+k+"="+a.flags[k])
	}
	args = append(args, a.extra...)
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== skiff %s\n", strings.Join(args, " "))
	env, err := testenv.Env()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig fires when the forking thread exits: fork from a locked goroutine that lives
	// as long as the process, so an interrupted test run does not leave agents behind.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		fmt.Fprintf(logf, "=== agent exited: %v\n", err)
		logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("start agent: %v", err)
	}
	a.proc, a.done = cmd.Process, done
	begin := time.Now()
	defer func() { t.Logf("agent %s ready in %s", a.Name, time.Since(begin).Round(time.Millisecond)) }()
	Eventually(t, 60*time.Second, func() error {
		select {
		case <-done:
			t.Fatalf("agent %s exited at start:\n%s", a.Name, tailLog(a.logPath, 20))
		default:
		}
		resp, err := InsecureHTTP.Get(a.Server + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz = %d %s", resp.StatusCode, b)
		}
		return nil
	})
}

// Stop sends SIGTERM and waits for the agent to exit (SIGKILL after 15 s).
func (a *Agent) Stop() {
	if a.proc == nil {
		return
	}
	_ = a.proc.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.proc.Kill()
		<-a.done
	}
	a.proc = nil
}

// Kill9 kills the agent with SIGKILL, as a crash or power cut would.
func (a *Agent) Kill9(t testing.TB) {
	t.Helper()
	if err := a.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 agent: %v", err)
	}
	<-a.done
	a.proc = nil
}

// Restart starts the agent again on the same data dir, with flags changed by set ("" deletes).
func (a *Agent) Restart(t testing.TB, set map[string]string) {
	t.Helper()
	a.Stop()
	for k, v := range set {
		if v == "" {
			delete(a.flags, k)
		} else {
			a.flags[k] = v
		}
	}
	a.start(t)
}

// PID is the agent process's id.
func (a *Agent) PID() int { return a.proc.Pid }

// unmountUnder lazily unmounts whatever is still mounted below dir (tmpfs volumes of pods
// that were removed behind a stopped agent's back), deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func tailLog(path string, lines int) string {
	b, _ := os.ReadFile(path)
	keep := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(keep) > lines {
		keep = keep[len(keep)-lines:]
	}
	return strings.Join(keep, "\n")
}
