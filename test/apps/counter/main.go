// Command counter is the lab's demo and test workload. It counts once per
// interval and prints each count, so a restored process shows that it
// continues from its checkpoint rather than from zero. With -listen it also
// serves its state over HTTP:
//
//	GET  /count             the current count
//	GET  /state?key=K       a value held in memory
//	PUT  /state?key=K       store the request body in memory
//	GET  /file?path=P       the content of a file
//	PUT  /file?path=P       write the request body to a file
//	GET  /identity          user, groups, capabilities, environment, limits
//	                        and mounts of the process, as JSON
//	PUT  /connection?addr=A open a TCP connection to A and hold it
//	GET  /connection        "open" while the held connection is open,
//	                        "closed" once a read on it ends
//	GET  /healthz           200 once serving
//
// -alloc makes the process larger, so its checkpoint and transfer take
// longer. -multipath-tcp listens with Multipath TCP, as Go does by default
// where the kernel has it; without it the counter listens with plain TCP.
// "counter get URL" prints the body of a GET request, for clients that run
// inside the cluster.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	interval := flag.Duration("interval", time.Second, "time between two counts")
	listen := flag.String("listen", "", "address to serve HTTP on, for example :8080; empty serves nothing")
	name := flag.String("name", "count", "prefix of each printed line")
	stateFile := flag.String("state-file", "", "file to write the current count to after each count")
	allocMiB := flag.Int("alloc", 0, "MiB of memory to fill at start, to make a checkpoint larger and slower")
	multipath := flag.Bool("multipath-tcp", false, "listen with Multipath TCP, which CRIU cannot dump")
	flag.Parse()

	ballast := fill(*allocMiB)

	var count atomic.Int64
	if *listen != "" {
		srv := &server{count: &count, state: map[string]string{}}
		// Go listens with Multipath TCP by default where the kernel has it,
		// and CRIU up to 4.2.1 cannot dump MPTCP sockets ("Unsupported
		// proto 262").
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(*multipath)
		ln, err := lc.Listen(context.Background(), "tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			log.Fatal(http.Serve(ln, srv.routes()))
		}()
	}
	host, _ := os.Hostname()
	for {
		n := count.Load()
		fmt.Printf("%s=%d pid=%d host=%s\n", *name, n, os.Getpid(), host)
		if *stateFile != "" {
			if err := os.WriteFile(*stateFile, []byte(strconv.FormatInt(n, 10)), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "failed to write %s: %v\n", *stateFile, err)
			}
		}
		time.Sleep(*interval)
		count.Add(1)
		ballast[int(n)%len(ballast)]++
	}
}

// fill returns mib MiB of memory with every page written, so each page is
// part of a checkpoint. It returns one byte when mib is 0.
func fill(mib int) []byte {
	b := make([]byte, max(mib<<20, 1))
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func get(url string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

type server struct {
	count *atomic.Int64
	mu    sync.Mutex
	state map[string]string
	// held is the connection PUT /connection opened, and heldClosed is
	// closed once a read on it ends.
	held       net.Conn
	heldClosed chan struct{}
}

func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, s.count.Load())
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v, ok := s.state[r.URL.Query().Get("key")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = fmt.Fprint(w, v)
	})
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.state[r.URL.Query().Get("key")] = string(body)
		s.mu.Unlock()
	})
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = w.Write(data)
	})
	mux.HandleFunc("PUT /file", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			err = os.WriteFile(r.URL.Query().Get("path"), body, 0o644)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("PUT /connection", s.openConnection)
	mux.HandleFunc("GET /connection", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		closed := s.heldClosed
		s.mu.Unlock()
		switch {
		case closed == nil:
			http.Error(w, "no connection held", http.StatusNotFound)
		case isClosed(closed):
			_, _ = fmt.Fprintln(w, "closed")
		default:
			_, _ = fmt.Fprintln(w, "open")
		}
	})
	mux.HandleFunc("GET /identity", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(identity())
	})
	return mux
}

// openConnection dials the address in the query with plain TCP and holds
// the connection, reading from it until the read ends.
func (s *server) openConnection(w http.ResponseWriter, r *http.Request) {
	d := net.Dialer{Timeout: 5 * time.Second}
	d.SetMultipathTCP(false)
	conn, err := d.DialContext(r.Context(), "tcp", r.URL.Query().Get("addr"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	closed := make(chan struct{})
	s.mu.Lock()
	if s.held != nil {
		_ = s.held.Close()
	}
	s.held, s.heldClosed = conn, closed
	s.mu.Unlock()
	go func() {
		_, _ = io.Copy(io.Discard, conn)
		close(closed)
	}()
	_, _ = fmt.Fprintln(w, conn.LocalAddr(), "->", conn.RemoteAddr())
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Identity is the process's view of itself, which a restored process must
// share with the original.
type Identity struct {
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	Groups   []int    `json:"groups"`
	CapEff   string   `json:"capEff"`
	CapBnd   string   `json:"capBnd"`
	Env      []string `json:"env"`
	NoFile   uint64   `json:"noFile"`
	Mounts   []string `json:"mounts"`
	Cgroup   string   `json:"cgroup"`
	Memory   string   `json:"memoryLimit"`
	Hostname string   `json:"hostname"`
}

func identity() Identity {
	id := Identity{UID: os.Getuid(), GID: os.Getgid(), Env: os.Environ()}
	id.Groups, _ = os.Getgroups()
	id.Hostname, _ = os.Hostname()
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				id.CapEff = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				id.CapBnd = strings.TrimSpace(v)
			}
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		id.NoFile = lim.Cur
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(mounts)), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 {
				id.Mounts = append(id.Mounts, f[1]+" "+f[2]+" "+strings.Split(f[3], ",")[0])
			}
		}
	}
	if cg, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		id.Cgroup = strings.TrimSpace(string(cg))
	}
	for _, p := range []string{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"} {
		if data, err := os.ReadFile(p); err == nil {
			id.Memory = strings.TrimSpace(string(data))
			break
		}
	}
	return id
}
