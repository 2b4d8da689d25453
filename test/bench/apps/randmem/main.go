// Command randmem is the benchmarks' memory workload. It fills -mib MiB of
// memory with pseudo-random bytes, so that no compression shrinks its
// checkpoint, writes every page, and keeps the memory until it exits. With
// -listen it serves:
//
//	GET /healthz   200 once the memory is filled, 503 before
//	GET /checksum  the SHA-256 of the memory, hex-encoded
//	GET /count     how many seconds the process has counted since it started
//
// A restored process answers /checksum with the value the source gave before
// the cut, which proves that every page arrived unchanged. It prints one line
// per second, so its log shows that it went on counting after a restore.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	mib := flag.Int("mib", 0, "MiB of random memory to hold")
	seed := flag.Uint64("seed", 1, "seed of the pseudo-random bytes")
	listen := flag.String("listen", "", "address to serve HTTP on, for example :8080; empty serves nothing")
	readyFile := flag.String("ready-file", "", "file to create once the memory is filled")
	flag.Parse()

	var ready atomic.Bool
	var count atomic.Int64
	var mu sync.Mutex
	var memory []byte
	if *listen != "" {
		serve(*listen, &ready, &count, &mu, &memory)
	}

	start := time.Now()
	filled := fill(*mib, *seed)
	mu.Lock()
	memory = filled
	mu.Unlock()
	ready.Store(true)
	fmt.Printf("filled %d MiB in %s\n", *mib, time.Since(start).Round(time.Millisecond))
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ready\n"), 0o644); err != nil {
			log.Fatalf("failed to write %s: %v", *readyFile, err)
		}
	}

	for {
		n := count.Load()
		fmt.Printf("count=%d pid=%d\n", n, os.Getpid())
		time.Sleep(time.Second)
		count.Add(1)
	}
}

// fill returns mib MiB of bytes from a PCG generator: every page is
// written, and the bytes do not compress.
func fill(mib int, seed uint64) []byte {
	b := make([]byte, mib<<20)
	rng := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b
}

func serve(addr string, ready *atomic.Bool, count *atomic.Int64, mu *sync.Mutex, memory *[]byte) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "filling memory", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, count.Load())
	})
	mux.HandleFunc("GET /checksum", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "filling memory", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		sum := sha256.Sum256(*memory)
		mu.Unlock()
		_, _ = fmt.Fprintln(w, hex.EncodeToString(sum[:]))
	})

	// Go listens with Multipath TCP where the kernel has it, and CRIU 4.2
	// cannot dump an MPTCP socket ("Unsupported proto 262").
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		log.Fatal(srv.Serve(ln))
	}()
}
