package podman

import (
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// oomWatcher learns which containers the kernel's OOM killer hit by reading the kernel
// log, as the kubelet (cadvisor's oomparser) does. Podman 4.3 reports OOMKilled only when
// conmon catches the cgroup's OOM notification, which it does not on every kernel
// (cgroup v1 on this project's CI kind, for one); the kernel always logs
// "oom-kill:...,oom_memcg=/.../libpod-<id>,..." with the container's ID.
type oomWatcher struct {
	f    *os.File
	mu   sync.Mutex
	seen map[string]time.Time // container ID → when its cgroup hit the OOM killer
	subs map[chan string]bool // Events subscribers: IDs of containers hit from now on
}

var memcgID = regexp.MustCompile(`(?:oom_memcg|task_memcg)=[^,]*libpod-([0-9a-f]{64})`)

// startOOMWatcher reads /dev/kmsg in the background; nil when it cannot be read (not
// root, or no kernel log in this sandbox): OOMKilled then comes from Podman alone.
func startOOMWatcher() *oomWatcher {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		return nil
	}
	w := &oomWatcher{f: f, seen: map[string]time.Time{}, subs: map[chan string]bool{}}
	go w.run()
	return w
}

func (w *oomWatcher) run() {
	buf := make([]byte, 8192)
	for {
		n, err := w.f.Read(buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten before we read them; go on from the next
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				_ = w.f.Close()
			}
			return
		}
		w.parse(string(buf[:n]), time.Now(), monotonicNow())
	}
}

// parse handles one kmsg record: "prio,seq,usec-since-boot,flags;message".
func (w *oomWatcher) parse(rec string, now time.Time, mono time.Duration) {
	head, msg, ok := strings.Cut(rec, ";")
	if !ok || !strings.Contains(msg, "oom-kill:") {
		return
	}
	m := memcgID.FindStringSubmatch(msg)
	if m == nil {
		return
	}
	at := now
	if f := strings.Split(head, ","); len(f) >= 3 {
		if usec, err := strconv.ParseInt(f[2], 10, 64); err == nil && mono > 0 {
			at = now.Add(time.Duration(usec)*time.Microsecond - mono)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[m[1]] = at
	for ch := range w.subs {
		select {
		case ch <- m[1]:
		default: // a slow subscriber misses it; the died event and OOMKilled still come
		}
	}
}

// subscribe returns a channel of container IDs the OOM killer hits from now on (nil
// when there is no watcher) and a function that ends the subscription.
func (w *oomWatcher) subscribe() (<-chan string, func()) {
	if w == nil {
		return nil, func() {}
	}
	ch := make(chan string, 16)
	w.mu.Lock()
	w.subs[ch] = true
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

// killed reports whether the container's cgroup hit the OOM killer since it started.
func (w *oomWatcher) killed(id string, startedAt time.Time) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	at, ok := w.seen[id]
	w.mu.Unlock()
	// The kernel's clock and the wall clock can drift a little apart.
	return ok && !at.Before(startedAt.Add(-time.Second))
}

func (w *oomWatcher) forget(id string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.seen, id)
	w.mu.Unlock()
}

func (w *oomWatcher) close() {
	if w != nil {
		_ = w.f.Close()
	}
}

func monotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
