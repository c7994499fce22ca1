package gitsync

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

// benchRepo is a repository of 100 manifests in 10 directories with a little history.
func benchRepo(b *testing.B) *gitrepo.Repo {
	r := gitrepo.New(b)
	for i := range 100 {
		r.Write(fmt.Sprintf("apps/d%d/app%d.yaml", i%10, i), podYAML(fmt.Sprintf("app%d", i)))
	}
	r.Commit("100 manifests")
	for i := range 5 {
		r.Write("apps/d0/app0.yaml", podYAML(fmt.Sprintf("rev%d", i)))
		r.Commit(fmt.Sprintf("rev %d", i))
	}
	return r
}

func benchTransports(b *testing.B, r *gitrepo.Repo) map[string]string {
	return map[string]string{"file": r.URL(), "daemon": r.ServeDaemon(b), "http": r.ServeHTTP(b)}
}

// BenchmarkNoChangeFetch: one poll of an unchanged remote (list references, nothing to do).
// cpu-ms/op is this process's CPU time (the client; servers run in child processes, except
// the HTTP fixture's CGI glue).
func BenchmarkNoChangeFetch(b *testing.B) {
	r := benchRepo(b)
	for name, u := range benchTransports(b, r) {
		b.Run(name, func(b *testing.B) {
			s := start(b, testConfig(b, u), &proposer{})
			if _, err := syncNow(b, s); err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := syncNow(b, s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNewCommit: fetch of a new commit, export of its 100 files, parse and propose.
func BenchmarkNewCommit(b *testing.B) {
	r := benchRepo(b)
	for name, u := range benchTransports(b, r) {
		b.Run(name, func(b *testing.B) {
			p := &proposer{}
			s := start(b, testConfig(b, u), p)
			if _, err := syncNow(b, s); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				r.Write("apps/d1/app1.yaml", podYAML(fmt.Sprintf("bench-%s-%d", name, i)))
				head := r.Commit("bench")
				b.StartTimer()
				st, err := syncNow(b, s)
				if err != nil || st.Head.Hash != head {
					b.Fatalf("Sync = %s, %v; want %s", st.Head.Hash, err, head)
				}
			}
		})
	}
}
