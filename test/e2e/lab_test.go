//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lpm-dev/lpm/lab/workload"
)

// The lab's own properties, which every lpm scenario relies on.

func TestLabPodsReachEachOtherAcrossNodes(t *testing.T) {
	ns := newNamespace(t)
	a := createPod(t, workload.CounterPod(ns, "on-a", nodeA))
	b := createPod(t, workload.CounterPod(ns, "on-b", nodeB))
	if a.Status.PodIP == b.Status.PodIP {
		t.Fatalf("both pods have IP %s", a.Status.PodIP)
	}
	for _, tc := range []struct{ name, cidr, ip string }{
		{nodeA, theLab.Instance().PodCIDR(0).String(), a.Status.PodIP},
		{nodeB, theLab.Instance().PodCIDR(1).String(), b.Status.PodIP},
	} {
		if !strings.HasPrefix(tc.ip, strings.TrimSuffix(tc.cidr, "0/24")) {
			t.Errorf("pod on %s has IP %s, want one in %s", tc.name, tc.ip, tc.cidr)
		}
	}

	// kubectl exec goes through the kube-apiserver to node-a's kubelet with
	// the lab's certificates; the request then crosses to node-b.
	out, err := kubectl(t, "exec", "-n", ns, "on-a", "--", "/counter", "get",
		fmt.Sprintf("http://%s:8080/healthz", b.Status.PodIP))
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Errorf("pod on %s reaching pod on %s: %q, %v", nodeA, nodeB, out, err)
	}
}

func TestLabServiceRoutesToOtherNode(t *testing.T) {
	ns := newNamespace(t)
	createPod(t, workload.CounterPod(ns, "client", nodeA))
	server := createPod(t, workload.CounterPod(ns, "server", nodeB))
	if err := httpPut(t, server.Status.PodIP, "/state?key=who", "server-on-b"); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "server"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	ctx := testContext(t, time.Minute)
	if err := clients.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		out, err = kubectl(t, "exec", "-n", ns, "client", "--", "/counter", "get",
			fmt.Sprintf("http://%s/state?key=who", svc.Spec.ClusterIP))
		if err == nil {
			break
		}
	}
	if err != nil || strings.TrimSpace(out) != "server-on-b" {
		t.Errorf("Service %s answered %q, %v; want server-on-b", svc.Spec.ClusterIP, out, err)
	}
}

// kubeletClient returns an HTTPS client that verifies the kubelets against
// the lab's CA, optionally with a client certificate.
func kubeletClient(t *testing.T, certName string) *http.Client {
	t.Helper()
	pkiDir := theLab.Instance().PKIDir()
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certName != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, certName+".crt"), filepath.Join(pkiDir, certName+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func TestLabKubeletAuthentication(t *testing.T) {
	url := fmt.Sprintf("https://%s:10250/pods", theLab.Instance().NodeIP(0))
	for _, tc := range []struct {
		name       string
		cert       string
		wantStatus int
	}{
		// Verifying the serving certificate against the lab's CA and the
		// node's IP is part of every case.
		{name: "anonymous", cert: "", wantStatus: http.StatusUnauthorized},
		{name: "scheduler without kubelet rights", cert: "scheduler", wantStatus: http.StatusForbidden},
		{name: "admin", cert: "admin", wantStatus: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := kubeletClient(t, tc.cert).Get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

func TestLabNodesAreSeparate(t *testing.T) {
	ctx := testContext(t, time.Minute)
	nodes, err := theLab.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("lab has %d nodes, want 2", len(nodes))
	}
	seen := map[string]string{}
	for _, n := range nodes {
		host, err := n.Output(ctx, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(host)); got != n.Name() {
			t.Errorf("hostname of %s = %q", n.Name(), got)
		}
		// Each node has its own PID namespace: its PID 1 is its anchor.
		comm, err := n.Output(ctx, "cat", "/proc/1/comm")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(comm)) != "bash" {
			t.Errorf("PID 1 of %s is %q, want the anchor (bash)", n.Name(), comm)
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.PID()))
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[link]; ok {
			t.Errorf("%s and %s share mount namespace %s", n.Name(), other, link)
		}
		seen[link] = n.Name()

		out, err := n.Output(ctx, "criu", "--version")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "Version: 4.") {
			t.Errorf("criu on %s: %q, want version 4", n.Name(), out)
		}
	}
}
