package procscan

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestDecodeAddress(t *testing.T) {
	tests := []struct {
		hex  string
		want string
	}{
		{hex: "0100007F:1F90", want: "127.0.0.1:8080"},
		{hex: "0B10C90A:A2F4", want: "10.201.16.11:41716"},
		{hex: "00000000:0000", want: "0.0.0.0:0"},
		{hex: "00000000000000000000000001000000:0050", want: "[::1]:80"},
		{hex: "0000000000000000FFFF00000100007F:1F90", want: "127.0.0.1:8080"},
		{hex: "garbage", want: "garbage"},
		{hex: "0100007F:XYZ", want: "0100007F:XYZ"},
	}
	for _, tc := range tests {
		t.Run(tc.hex, func(t *testing.T) {
			if got := decodeAddress(tc.hex); got != tc.want {
				t.Errorf("decodeAddress(%q) = %q, want %q", tc.hex, got, tc.want)
			}
		})
	}
}

// socketKernel is a fake kernel that also lists MPTCP sockets, and fails
// when asked without an answer prepared.
type socketKernel struct {
	fakeKernel
	multipath map[string]bool
	err       error
	asked     *int
}

func (k socketKernel) MultipathTCPInodes(string) (map[string]bool, error) {
	*k.asked++
	if k.multipath == nil && k.err == nil {
		return nil, errors.New("not expected to be asked")
	}
	return k.multipath, k.err
}

// tcpLine is a line of /proc/net/tcp for a socket in a state (hex).
func tcpLine(local, remote, state, inode string) string {
	return fmt.Sprintf("   0: %s %s %s 00000000:00000000 00:00000000 00000000     0        0 %s 1 0 20 4 30 10 -1",
		local, remote, state, inode)
}

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// protocolsFile is /proc/net/protocols with n MPTCP sockets in use.
func protocolsFile(n int) string {
	const flags = "  y  y  y  n  y  y  y  y  y  y  y  y  n  n  y  y  y  n\n"
	return "protocol  size sockets  memory press maxhdr  slab module    " +
		" cl co di ac io in de sh ss gs se re sp bi br ha uh gp em\n" +
		"MPTCPv6   2064      0       1   no       0   yes  kernel    " + flags +
		fmt.Sprintf("MPTCP     1936      %d       1   no       0   yes  kernel    ", n) + flags +
		"TCP       2560      3       1   no     320   yes  kernel    " +
		"  y  y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y\n"
}

func TestScanSockets(t *testing.T) {
	// The pod's process: fd 3 listens on 8080, fd 4 is a connection to
	// 10.201.17.5:443, fd 5 a Unix socket.
	fds := map[int]string{3: "socket:[5001]", 4: "socket:[5002]", 5: "socket:[5003]"}
	tcp := tcpHeader +
		tcpLine("00000000:1F90", "00000000:0000", "0A", "5001") + "\n" +
		tcpLine("0B10C90A:A2F4", "0511C90A:01BB", "01", "5002") + "\n" +
		tcpLine("0100007F:1F91", "0100007F:A000", "01", "0") + "\n"
	listenOnly := tcpHeader + tcpLine("00000000:1F90", "00000000:0000", "0A", "5001") + "\n"
	tests := []struct {
		name        string
		tcp         string
		mptcp       int
		kernel      socketKernel
		tcpClose    bool
		want        []found
		wantProblem string
	}{
		{name: "established connection without tcp-close", tcp: tcp,
			want: []found{{lpmv1.ReasonTCPConnectionOpen, "app", 100, 4}}, wantProblem: "ESTABLISHED"},
		{name: "established connection with tcp-close", tcp: tcp, tcpClose: true},
		{name: "listening socket only", tcp: listenOnly},
		{name: "MPTCP listener", tcp: listenOnly, mptcp: 1,
			kernel: socketKernel{multipath: map[string]bool{"5001": true}},
			want:   []found{{lpmv1.ReasonMultipathTCPInUse, "app", 100, 3}}, wantProblem: "Multipath TCP"},
		{name: "MPTCP socket of another process", tcp: listenOnly, mptcp: 1,
			kernel: socketKernel{multipath: map[string]bool{"7777": true}}},
		{name: "MPTCP sockets not listed", tcp: listenOnly, mptcp: 2,
			kernel: socketKernel{err: syscall.ENOENT},
			want:   []found{{lpmv1.ReasonMultipathTCPInUse, "app", 100, 3}}, wantProblem: "could not tell"},
		{name: "established connection and MPTCP listener", tcp: tcp, mptcp: 1,
			kernel: socketKernel{multipath: map[string]bool{"5001": true}},
			want: []found{{lpmv1.ReasonTCPConnectionOpen, "app", 100, 4},
				{lpmv1.ReasonMultipathTCPInUse, "app", 100, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.kernel.asked = new(int)
			procRoot := buildTree(t, root, []proc{{pid: 100, fds: fds}}, &tc.kernel.fakeKernel)
			dir := filepath.Join(procRoot, "100")
			mustMkdir(t, filepath.Join(dir, "net"))
			mustSymlink(t, "net:[4026532300]", filepath.Join(dir, "ns", "net"))
			mustWrite(t, filepath.Join(dir, "net", "tcp"), tc.tcp)
			mustWrite(t, filepath.Join(dir, "net", "tcp6"), tcpHeader)
			mustWrite(t, filepath.Join(dir, "net", "protocols"), protocolsFile(tc.mptcp))
			sc := Scanner{ProcRoot: procRoot, CgroupRoot: root, Kernel: tc.kernel,
				Policy: Policy{CRIUVersion: criu421, TCPClose: tc.tcpClose}}

			res, err := sc.Scan([]Container{{Name: "app", PID: 100}})

			if err != nil {
				t.Fatalf("Scan() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, project(res.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if tc.wantProblem != "" && (len(res.Findings) == 0 ||
				!strings.Contains(res.Findings[0].Problem, tc.wantProblem)) {
				t.Errorf("first finding %+v does not mention %q", res.Findings, tc.wantProblem)
			}
			if tc.mptcp == 0 && *tc.kernel.asked > 0 {
				t.Errorf("the kernel was asked for MPTCP sockets of a namespace that has none")
			}
		})
	}
}

// TestScanLiveSockets scans the test process itself while it listens with
// Multipath TCP and holds a plain TCP connection to that listener.
func TestScanLiveSockets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("entering a network namespace needs root")
	}
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	if multipathTCPCount("/proc/self/net/protocols") == 0 {
		t.Skip("the kernel has no Multipath TCP")
	}
	d := net.Dialer{}
	d.SetMultipathTCP(false)
	conn, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = accepted.Close() }()
	listenFD, connFD := fdOf(t, ln), fdOf(t, conn)

	for _, tcpClose := range []bool{false, true} {
		t.Run("tcp-close="+strconv.FormatBool(tcpClose), func(t *testing.T) {
			sc := Scanner{Policy: Policy{CRIUVersion: criu421, TCPClose: tcpClose}}

			res, err := sc.Scan([]Container{{Name: "app", PID: os.Getpid()}})

			if err != nil {
				t.Fatalf("Scan() error = %v", err)
			}
			got := map[int]lpmv1.Reason{}
			for _, f := range res.Findings {
				got[f.FD] = f.Reason
			}
			if got[listenFD] != lpmv1.ReasonMultipathTCPInUse {
				t.Errorf("listener fd %d: finding %q, want %s (%s)", listenFD, got[listenFD],
					lpmv1.ReasonMultipathTCPInUse, res.Message(5))
			}
			wantConn := lpmv1.ReasonTCPConnectionOpen
			if tcpClose {
				wantConn = ""
			}
			if got[connFD] != wantConn {
				t.Errorf("connection fd %d: finding %q, want %q (%s)", connFD, got[connFD], wantConn,
					res.Message(5))
			}
		})
	}
}

// fdOf returns the descriptor number of a listener or connection.
func fdOf(t *testing.T, c any) int {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}
