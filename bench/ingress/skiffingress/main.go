// Command skiffingress runs skiff's ingress for the benchmark: one Ingress for -host with
// TLS from a kubernetes.io/tls Secret (the same certificate nginx and Caddy get), routing
// everything to a selector-less Service whose manual Endpoints point at -backend.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/ingress"
	"github.com/skiffhq/skiff/internal/gctune"
	"github.com/skiffhq/skiff/state"
)

func main() {
	gctune.Apply() // as the agent runs
	httpAddr := flag.String("http", "127.0.0.1:48081", "HTTP listen address")
	httpsAddr := flag.String("https", "127.0.0.1:48443", "HTTPS listen address")
	backend := flag.String("backend", "127.0.0.1:18080", "backend host:port")
	host := flag.String("host", "localhost", "Ingress host, with TLS (plain HTTP is redirected)")
	plainHost := flag.String("plain-host", "plain.localhost", "Ingress host without TLS, for plain HTTP")
	certFile := flag.String("cert", "cert.pem", "PEM certificate chain")
	keyFile := flag.String("key", "key.pem", "PEM key")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM")
	flag.Parse()

	crt, err := os.ReadFile(*certFile)
	check(err)
	key, err := os.ReadFile(*keyFile)
	check(err)
	bip, bport, err := net.SplitHostPort(*backend)
	check(err)
	port, err := strconv.Atoi(bport)
	check(err)

	ns := metav1.ObjectMeta{Namespace: "default"}
	meta := func(name string) metav1.ObjectMeta { m := ns; m.Name = name; return m }
	ing := &networkingv1.Ingress{ObjectMeta: meta("bench"), Spec: networkingv1.IngressSpec{
		TLS:   []networkingv1.IngressTLS{{Hosts: []string{*host}, SecretName: "bench-tls"}},
		Rules: []networkingv1.IngressRule{rule(*host), rule(*plainHost)},
	}}
	svc := &corev1.Service{ObjectMeta: meta("backend"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	eps := &corev1.Endpoints{ObjectMeta: meta("backend"), Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: bip}}, Ports: []corev1.EndpointPort{{Name: "http", Port: int32(port)}}}}}
	sec := &corev1.Secret{ObjectMeta: meta("bench-tls"), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}

	store := state.NewMemStore()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	check(store.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "bench"},
		Objects: []state.Obj{{Object: ing}, {Object: svc}, {Object: eps}, {Object: sec}}}}))

	s, err := ingress.New(ingress.Config{HTTP: *httpAddr, HTTPS: *httpsAddr, Class: "skiff", DefaultClass: true})
	check(err)
	s.Update(store.State())
	for _, h := range s.Status() {
		for _, p := range h.Problems {
			log.Printf("%s: %s", h.Host, p)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	check(s.Start(ctx))
	log.Printf("skiff ingress on %s and %s → %s", s.HTTPAddr(), s.HTTPSAddr(), *backend)
	<-ctx.Done()
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}

func rule(host string) networkingv1.IngressRule {
	prefix := networkingv1.PathTypePrefix
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "backend", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
