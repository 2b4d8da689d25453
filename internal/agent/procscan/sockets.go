package procscan

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// connectedTCPStates are the states of the "st" column of /proc/net/tcp
// (include/net/tcp_states.h) that CRIU 4.2.1 dumps only with tcp-established
// or tcp-close. Without either it fails the dump with "Connected TCP socket"
// (criu/sk-inet.c).
var connectedTCPStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0B": "CLOSING",
}

// tcpSocket is one line of /proc/<pid>/net/tcp or tcp6.
type tcpSocket struct {
	local, remote string
	// state is the kernel's state number in hex, as the file shows it.
	state string
}

// netSockets are the sockets of one network namespace that the socket
// rules look at, by inode number.
type netSockets struct {
	tcp map[string]tcpSocket
	// multipathTCP counts the namespace's MPTCP sockets, from its
	// /proc/net/protocols, and multipathInodes names them.
	multipathTCP    int
	multipathInodes map[string]bool
	// multipathErr is the error that kept the MPTCP sockets from being
	// named.
	multipathErr error
}

// SocketKernel lists what /proc does not show about the sockets of a
// network namespace. A Kernel that is not one names no MPTCP socket.
type SocketKernel interface {
	// MultipathTCPInodes returns the inode numbers of the Multipath TCP
	// sockets in the network namespace that netns (a /proc/<pid>/ns/net
	// link) refers to.
	MultipathTCPInodes(netns string) (map[string]bool, error)
}

// socketsOf returns the sockets of a process's network namespace, read
// once per namespace.
func (r *reader) socketsOf(p *process) *netSockets {
	netns, err := os.Readlink(r.path(p.pid, "ns", "net"))
	if err != nil {
		netns = "pid " + strconv.Itoa(p.pid)
	}
	if ns, ok := r.netns[netns]; ok {
		return ns
	}
	ns := &netSockets{tcp: map[string]tcpSocket{}}
	for _, table := range []string{"tcp", "tcp6"} {
		readTCPTable(r.path(p.pid, "net", table), ns.tcp)
	}
	ns.multipathTCP = multipathTCPCount(r.path(p.pid, "net", "protocols"))
	if ns.multipathTCP > 0 {
		if k, ok := r.kernel.(SocketKernel); ok {
			ns.multipathInodes, ns.multipathErr = k.MultipathTCPInodes(r.path(p.pid, "ns", "net"))
		} else {
			ns.multipathErr = errors.New("the scanner cannot list a namespace's sockets")
		}
	}
	if r.netns == nil {
		r.netns = map[string]*netSockets{}
	}
	r.netns[netns] = ns
	return ns
}

// readTCPTable adds the sockets of a /proc/net/tcp or tcp6 file to
// sockets. A file that cannot be read adds nothing: the namespace has no
// such sockets, or the kernel no IPv6.
func readTCPTable(path string, sockets map[string]tcpSocket) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when
		// retrnsmt uid timeout inode ...
		fields := strings.Fields(scanner.Text())
		if len(fields) < 10 || fields[0] == "sl" || fields[9] == "0" {
			continue
		}
		sockets[fields[9]] = tcpSocket{local: decodeAddress(fields[1]), remote: decodeAddress(fields[2]),
			state: fields[3]}
	}
}

// decodeAddress turns an address of /proc/net/tcp, hex words of the
// address as the host stores them and a hex port, into "ip:port".
func decodeAddress(hexAddr string) string {
	ipHex, portHex, ok := strings.Cut(hexAddr, ":")
	port, err := strconv.ParseUint(portHex, 16, 16)
	if !ok || err != nil || (len(ipHex) != 8 && len(ipHex) != 32) {
		return hexAddr
	}
	raw := make([]byte, len(ipHex)/2)
	for word := 0; word < len(raw); word += 4 {
		v, err := strconv.ParseUint(ipHex[2*word:2*word+8], 16, 32)
		if err != nil {
			return hexAddr
		}
		binary.NativeEndian.PutUint32(raw[word:word+4], uint32(v))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)).String()
}

// multipathTCPCount returns the number of MPTCP sockets in use in a
// namespace, the "sockets" column of the MPTCP and MPTCPv6 lines of
// /proc/<pid>/net/protocols; 0 when the kernel has no MPTCP.
func multipathTCPCount(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	total := 0
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || (fields[0] != "MPTCP" && fields[0] != "MPTCPv6") {
			continue
		}
		if n, err := strconv.Atoi(fields[2]); err == nil {
			total += n
		}
	}
	return total
}

// socketInode returns N of a descriptor whose target is socket:[N].
func socketInode(target string) (string, bool) {
	inode, ok := strings.CutPrefix(target, "socket:[")
	if !ok || !strings.HasSuffix(inode, "]") {
		return "", false
	}
	return strings.TrimSuffix(inode, "]"), true
}

// ruleTCPConnections rejects established TCP connections unless the node's
// CRIU configuration sets tcp-close, without which CRIU cannot dump them.
func ruleTCPConnections(s scope, p *process) []Finding {
	if s.policy.TCPClose || s.sockets == nil {
		return nil
	}
	var out []Finding
	ns := s.sockets(p)
	for _, f := range p.fds {
		inode, ok := socketInode(f.target)
		if !ok {
			continue
		}
		sock, found := ns.tcp[inode]
		state, connected := connectedTCPStates[sock.state]
		if !found || !connected {
			continue
		}
		out = append(out, finding(s, p, lpmv1.ReasonTCPConnectionOpen, f.fd,
			fmt.Sprintf("%s, TCP %s to %s", f.target, sock.local, sock.remote),
			fmt.Sprintf("it holds a TCP connection in state %s, and the node's CRIU configuration does not "+
				"set tcp-close, without which CRIU cannot dump it", state),
			"set tcp-close and skip-in-flight in /etc/criu/runc.conf on every node (the restored pod gets "+
				"another address, so no connection could continue), or close the connection before the "+
				"migration"))
	}
	return out
}

// ruleMultipathTCP rejects Multipath TCP sockets: CRIU up to 4.2.1 fails
// on them with "Unsupported proto 262". Go 1.24 and later listen with MPTCP
// by default where the kernel has it.
func ruleMultipathTCP(s scope, p *process) []Finding {
	if s.sockets == nil {
		return nil
	}
	ns := s.sockets(p)
	if ns.multipathTCP == 0 {
		return nil
	}
	const fix = "turn Multipath TCP off in the program and restart the pod: for a Go 1.24 or later " +
		"program set GODEBUG=multipathtcp=0 in the container's environment, or call " +
		"net.ListenConfig.SetMultipathTCP(false); other programs have their own setting"
	var out []Finding
	for _, f := range p.fds {
		inode, ok := socketInode(f.target)
		if !ok {
			continue
		}
		if ns.multipathErr != nil {
			out = append(out, finding(s, p, lpmv1.ReasonMultipathTCPInUse, f.fd, f.target,
				fmt.Sprintf("its network namespace holds %d Multipath TCP sockets, which CRIU cannot dump, "+
					"and the agent could not tell which: %v", ns.multipathTCP, ns.multipathErr), fix))
			return out
		}
		if !ns.multipathInodes[inode] {
			continue
		}
		object := f.target
		if sock, found := ns.tcp[inode]; found {
			object = fmt.Sprintf("%s, MPTCP %s", f.target, sock.local)
		}
		out = append(out, finding(s, p, lpmv1.ReasonMultipathTCPInUse, f.fd, object,
			"it holds a Multipath TCP socket, which CRIU cannot dump (\"Unsupported proto 262\")", fix))
	}
	return out
}

// MultipathTCPInodes lists the namespace's MPTCP sockets with the kernel's
// socket diagnostics (inet_diag for IPPROTO_MPTCP, CONFIG_INET_MPTCP_DIAG),
// asked through a netlink socket created inside the namespace.
func (LiveKernel) MultipathTCPInodes(netns string) (map[string]bool, error) {
	fd, err := netlinkSocketIn(netns)
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Close(fd) }()
	inodes := map[string]bool{}
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpInetDiag(fd, uint32(seq+1), family, unix.IPPROTO_MPTCP, inodes); err != nil {
			return nil, err
		}
	}
	return inodes, nil
}

// netlinkSocketIn creates a NETLINK_SOCK_DIAG socket in the network
// namespace that netns refers to. A socket stays in the namespace it was
// created in, so only its creation happens on a thread moved there.
func netlinkSocketIn(netns string) (int, error) {
	target, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("failed to open network namespace %s: %w", netns, err)
	}
	defer func() { _ = unix.Close(target) }()

	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("failed to open the agent's network namespace: %w", err)
	}
	defer func() { _ = unix.Close(own) }()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("failed to enter network namespace %s: %w", netns, err)
	}
	fd, sockErr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the Go runtime ends it with its
		// goroutine instead of running other code in the pod's namespace.
		if sockErr == nil {
			_ = unix.Close(fd)
		}
		return -1, fmt.Errorf("failed to return to the agent's network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if sockErr != nil {
		return -1, fmt.Errorf("failed to create a socket diagnostics socket in %s: %w", netns, sockErr)
	}
	return fd, nil
}

// Sizes, offsets and attributes of inet_diag (linux/inet_diag.h).
const (
	sizeofInetDiagSockID = 48
	sizeofInetDiagReqV2  = 8 + sizeofInetDiagSockID
	// inetDiagMsgInode is the offset of idiag_inode in struct inet_diag_msg.
	inetDiagMsgInode = 4 + sizeofInetDiagSockID + 16
	// inetDiagReqProtocol (INET_DIAG_REQ_PROTOCOL) carries a protocol
	// number that does not fit the request's 8-bit sdiag_protocol, such as
	// IPPROTO_MPTCP (262). Without it the kernel reads 262 as 6, TCP.
	inetDiagReqProtocol = 3
)

// dumpInetDiag requests every socket of a family and protocol in any state
// and adds their inode numbers to inodes.
func dumpInetDiag(fd int, seq uint32, family uint8, protocol int, inodes map[string]bool) error {
	req := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagReqV2+unix.SizeofRtAttr+4)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], seq)
	body := req[unix.SizeofNlMsghdr:]
	body[0], body[1] = family, uint8(protocol)
	binary.NativeEndian.PutUint32(body[4:8], 0xffffffff)
	attr := body[sizeofInetDiagReqV2:]
	binary.NativeEndian.PutUint16(attr[0:2], unix.SizeofRtAttr+4)
	binary.NativeEndian.PutUint16(attr[2:4], inetDiagReqProtocol)
	binary.NativeEndian.PutUint32(attr[4:8], uint32(protocol))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("failed to send the socket diagnostics request: %w", err)
	}

	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("failed to read the socket diagnostics: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("invalid socket diagnostics message: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
						return fmt.Errorf("socket diagnostics for protocol %d: %w", protocol,
							syscall.Errno(errno))
					}
				}
				return nil
			}
			if len(m.Data) < inetDiagMsgInode+4 {
				continue
			}
			inode := binary.NativeEndian.Uint32(m.Data[inetDiagMsgInode : inetDiagMsgInode+4])
			inodes[strconv.FormatUint(uint64(inode), 10)] = true
		}
	}
}
