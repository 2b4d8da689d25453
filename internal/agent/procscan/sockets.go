package procscan

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

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
