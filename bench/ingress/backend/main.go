// Command backend is the benchmark's origin server: every request gets the same small
// body, as a static page or an API answer would.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

var body = []byte("hello from the benchmark backend: the same 64-byte body each time\n")[:64]

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	flag.Parse()
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
		hdr["Content-Length"] = []string{length}
		w.Write(body)
	})
	log.Fatal((&http.Server{Addr: *addr, Handler: h}).ListenAndServe())
}
