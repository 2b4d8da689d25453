package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// loadAverage returns the one-minute load average, or -1 when
// /proc/loadavg cannot be read.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// waitForLoad waits until the load average is below limit, at most for
// timeout, and returns the load when it stops waiting.
func waitForLoad(ctx context.Context, limit float64, timeout time.Duration) float64 {
	deadline := time.Now().Add(timeout)
	for {
		load := loadAverage()
		if ctx.Err() != nil {
			return load
		}
		if load < limit || time.Now().After(deadline) {
			if load >= limit {
				logf("the load average is %.2f after waiting %s for it to drop below %.2f; measuring anyway",
					load, timeout, limit)
			}
			return load
		}
		logf("waiting for the load average (%.2f) to drop below %.2f", load, limit)
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
}

// loadSampler keeps the highest load average seen during the run.
type loadSampler struct {
	mu      sync.Mutex
	highest float64
}

func startLoadSampler(ctx context.Context) *loadSampler {
	s := &loadSampler{highest: loadAverage()}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			load := loadAverage()
			s.mu.Lock()
			s.highest = max(s.highest, load)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *loadSampler) max() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.highest
}

func hostInfo() results.Host {
	h := results.Host{CPUs: runtime.NumCPU()}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseInt(f[1], 10, 64)
				h.MemoryMiB = kib / 1024
			}
		}
	}
	return h
}

// nodeVersions asks the source node for the versions of the runtime
// parts that the measurements depend on.
func nodeVersions(ctx context.Context, l *benchlab.Lab) map[string]string {
	out := map[string]string{}
	for name, args := range map[string][]string{
		"criu":       {"criu", "--version"},
		"runc":       {"runc", "--version"},
		"containerd": {"containerd", "--version"},
		"kubelet":    {"kubelet", "--version"},
	} {
		data, err := l.Source.Output(ctx, args[0], args[1:]...)
		if err != nil {
			continue
		}
		out[name] = firstLine(string(data))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out["kernel"] = strings.TrimSpace(string(data))
	}
	out["go"] = runtime.Version()
	if data, err := exec.CommandContext(ctx, "buildah", "--version").Output(); err == nil {
		out["buildah"] = firstLine(string(data))
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
