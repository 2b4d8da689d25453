package procscan

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Tests here scan real processes that the test binary starts as helpers
// in the running kernel's /proc.

const helperEnv = "LPM_PROCSCAN_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode)
		return
	}
	os.Exit(m.Run())
}

// runHelper opens files as the mode requests, starts children, prints "ready"
// and waits for its standard input to close. Modes: "tree:<children>:<fds>"
// (a parent of that many children, each process with fds descriptors, half
// of them pipes with data), "uring", "pidfd", "mqueue:<name>", "deleted:<bytes>".
func runHelper(mode string) {
	kind, args, _ := strings.Cut(mode, ":")
	var children []*exec.Cmd
	var stdins []io.Closer
	switch kind {
	case "tree":
		n, fds := splitInts(args)
		openFiles(fds)
		for range n {
			cmd := helperCommand(fmt.Sprintf("tree:0:%d", fds))
			stdin, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			_, _ = bufio.NewReader(out).ReadString('\n')
			children = append(children, cmd)
			stdins = append(stdins, stdin)
		}
	case "uring":
		var params [30]uint32
		_, _, _ = unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptrOf(&params), 0)
	case "pidfd":
		_, _ = unix.PidfdOpen(os.Getpid(), 0)
	case "mqueue":
		p, _ := unix.BytePtrFromString(args)
		_, _, _ = unix.Syscall6(unix.SYS_MQ_OPEN, uintptrOf(p), uintptr(unix.O_RDWR|unix.O_CREAT), 0o600, 0, 0, 0)
		defer func() { _, _, _ = unix.Syscall(unix.SYS_MQ_UNLINK, uintptrOf(p), 0, 0) }()
	case "deleted":
		size, _ := strconv.ParseInt(args, 10, 64)
		f, _ := os.CreateTemp("", "procscan-deleted-*")
		_ = f.Truncate(size)
		_ = os.Remove(f.Name())
		defer func() { _ = f.Close() }()
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, stdin := range stdins {
		_ = stdin.Close()
	}
	for _, c := range children {
		_ = c.Wait()
	}
}

func splitInts(s string) (int, int) {
	a, b, _ := strings.Cut(s, ":")
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x, y
}

// openFiles opens n descriptors beyond the first three: half of them the
// ends of pipes that hold one unread byte, the rest /dev/null.
func openFiles(n int) {
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	for i := 0; i+1 < n/2; i += 2 {
		var p [2]int
		if unix.Pipe2(p[:], unix.O_CLOEXEC) == nil {
			_, _ = unix.Write(p[1], []byte{1})
		}
	}
	for i := 0; i < n-n/2; i++ {
		_, _ = unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
}

func helperCommand(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// startHelper starts a helper and returns its PID once it is ready. The
// helper ends with the test.
func startHelper(t testing.TB, mode string) int {
	t.Helper()
	cmd := helperCommand(mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper %s did not start: %q %v", mode, line, err)
	}
	return cmd.Process.Pid
}

func TestScanLiveProcesses(t *testing.T) {
	tests := []struct {
		mode       string
		wantReason lpmv1.Reason
	}{
		{mode: "uring", wantReason: lpmv1.ReasonIOUringInUse},
		{mode: "mqueue:lpm-procscan-test", wantReason: lpmv1.ReasonMessageQueueInUse},
		{mode: "deleted:2097152", wantReason: lpmv1.ReasonDeletedFileTooLarge},
		{mode: "deleted:1024"},
		{mode: "pidfd"},
		{mode: "tree:2:40"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			pid := startHelper(t, tc.mode)
			sc := Scanner{Policy: Policy{CRIUVersion: 40201}}

			res, err := sc.Scan([]Container{{Name: "app", PID: pid}})

			if err != nil {
				t.Fatalf("Scan() error = %v", err)
			}
			var got []lpmv1.Reason
			for _, f := range res.Findings {
				got = append(got, f.Reason)
			}
			switch {
			case tc.wantReason == "" && len(got) > 0:
				t.Errorf("findings = %v, want none: %s", got, res.Message(3))
			case tc.wantReason != "" && (len(got) != 1 || got[0] != tc.wantReason):
				t.Errorf("findings = %v, want [%s]", got, tc.wantReason)
			}
		})
	}
}

// BenchmarkScanLive scans a real process tree of 100 processes with 100
// descriptors each (10,000 in all, half of them pipe ends holding data).
func BenchmarkScanLive(b *testing.B) {
	pid := startHelper(b, "tree:99:100")
	sc := Scanner{Policy: Policy{CRIUVersion: 40201}}
	var res *Result
	b.ResetTimer()
	for b.Loop() {
		var err error
		res, err = sc.Scan([]Container{{Name: "app", PID: pid}})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if res.Processes != 100 || res.FileDescriptors < 10_000 {
		b.Fatalf("scanned %d processes and %d descriptors, want 100 and at least 10000", res.Processes,
			res.FileDescriptors)
	}
	b.ReportMetric(float64(res.FileDescriptors), "fds")
}

func uintptrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }
