// Command dns serves a synthetic cluster from dnsd for bench/dns.sh and writes what the
// benchmark needs beside it: the same records as a zone file (for CoreDNS's file plugin)
// and a dnsperf query file of cluster names (A and SRV, all hits).
//
//	go run ./bench/dns -addr 127.0.0.1:5399 -dir /tmp/x -services 500 -pods 2000
//
// It prints "ready" once listening and serves until SIGINT or SIGTERM.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/skiffhq/skiff/dnsd"
	"github.com/skiffhq/skiff/dnsd/dnstest"
	"github.com/skiffhq/skiff/internal/gctune"
)

func main() {
	gctune.Apply() // as the agent runs
	addr := flag.String("addr", "127.0.0.1:5399", "dnsd listen address")
	dir := flag.String("dir", ".", "where to write cluster.local.zone and queries.txt")
	nsvc := flag.Int("services", 500, "Services")
	npod := flag.Int("pods", 2000, "pods")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the serving here")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/dns:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*addr, *dir, *nsvc, *npod); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dns:", err)
		os.Exit(1)
	}
}

func run(addr, dir string, nsvc, npod int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := dnstest.Synthetic(ctx, nsvc, npod)
	if err != nil {
		return err
	}
	s, err := dnsd.New(dnsd.Config{Addr: addr, Upstreams: []string{"127.0.0.1:1"},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Log:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	s.Update(m.State())
	if err := writeFiles(s, dir, nsvc, npod); err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	return s.Stop()
}

// writeFiles writes the zone (cluster zone only: the query mix has no PTR) and the queries.
func writeFiles(s *dnsd.Server, dir string, nsvc, npod int) error {
	var zone strings.Builder
	if err := s.WriteZone(&zone); err != nil {
		return err
	}
	z, err := os.Create(filepath.Join(dir, "cluster.local.zone"))
	if err != nil {
		return err
	}
	zw := bufio.NewWriter(z)
	for i, line := range strings.Split(strings.TrimSpace(zone.String()), "\n") {
		if strings.Contains(line, ".arpa.\t") {
			continue
		}
		fmt.Fprintln(zw, line)
		if i == 0 { // after the SOA: the apex NS a zone file needs
			fmt.Fprintln(zw, "cluster.local.\t5\tIN\tNS\tns.dns.cluster.local.")
			fmt.Fprintln(zw, "ns.dns.cluster.local.\t5\tIN\tA\t127.0.0.1")
		}
	}
	if err := zw.Flush(); err != nil {
		return err
	}
	if err := z.Close(); err != nil {
		return err
	}

	var q strings.Builder
	for i := range nsvc {
		base := fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%10)
		fmt.Fprintf(&q, "%s A\n", base)
		if i%4 == 3 { // headless: the peers' SRV and one peer's own name
			fmt.Fprintf(&q, "_peer._tcp.%s SRV\n", base)
			if npod > i {
				fmt.Fprintf(&q, "svc-%d-0.%s A\n", i, base)
			}
		} else {
			fmt.Fprintf(&q, "_http._tcp.%s SRV\n", base)
		}
	}
	return os.WriteFile(filepath.Join(dir, "queries.txt"), []byte(q.String()), 0o644)
}
