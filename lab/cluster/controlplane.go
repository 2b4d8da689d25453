package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/proc"
)

// controlPlane lists the control plane's processes in the order they stop.
var controlPlane = []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

func (l *Lab) pidFile(name string) string {
	return filepath.Join(l.inst.ControlPlaneDir(), name+".pid")
}

func (l *Lab) logFile(name string) string {
	return filepath.Join(l.inst.ControlPlaneDir(), "logs", name+".log")
}

func (l *Lab) startHostProcess(component string, args ...string) error {
	dir, err := node.ComponentPath(component)
	if err != nil {
		return err
	}
	_, err = proc.Start(proc.Spec{
		Args:    append([]string{filepath.Join(dir, component)}, args...),
		LogFile: l.logFile(component),
		PIDFile: l.pidFile(component),
	})
	return err
}

// startControlPlane starts etcd, the kube-apiserver, the controller manager
// and the scheduler on the host. etcd and the health ports listen on
// loopback only; the kube-apiserver listens on the bridge address only.
func (l *Lab) startControlPlane(ctx context.Context) error {
	in := l.inst
	pkiDir := in.PKIDir()
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", in.EtcdClientPort())
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", in.EtcdPeerPort())

	err := l.startHostProcess("etcd",
		"--name=lab",
		"--data-dir="+filepath.Join(in.ControlPlaneDir(), "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=lab="+peerURL,
		fmt.Sprintf("--listen-metrics-urls=http://127.0.0.1:%d", in.EtcdMetricsPort()),
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return fmt.Errorf("etcd did not become healthy: %w; see %s", err, l.logFile("etcd"))
	}

	err = l.startHostProcess("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address="+in.BridgeIP().String(),
		"--advertise-address="+in.BridgeIP().String(),
		fmt.Sprintf("--secure-port=%d", in.APIServerPort()),
		"--tls-cert-file="+p(certAPIServer+".crt"), "--tls-private-key-file="+p(certAPIServer+".key"),
		"--client-ca-file="+p("ca.crt"),
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--service-cluster-ip-range="+in.ServiceCIDR().String(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p(certServiceAccount+".pub"),
		"--service-account-signing-key-file="+p(certServiceAccount+".key"),
		"--kubelet-certificate-authority="+p("ca.crt"),
		"--kubelet-client-certificate="+p(certAPIServerKubelet+".crt"),
		"--kubelet-client-key="+p(certAPIServerKubelet+".key"),
		// Node names are not in any resolver; the kube-apiserver must dial
		// the kubelets by their InternalIP.
		"--kubelet-preferred-address-types=InternalIP",
		"--endpoint-reconciler-type=lease",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	tlsCfg, err := l.adminTLS()
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, in.APIServerURL()+"/readyz", tlsCfg, 90*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver did not become ready: %w; see %s", err, l.logFile("kube-apiserver"))
	}

	err = l.startHostProcess("kube-controller-manager",
		"--kubeconfig="+p(certControllerMgr+".kubeconfig"),
		"--authentication-kubeconfig="+p(certControllerMgr+".kubeconfig"),
		"--authorization-kubeconfig="+p(certControllerMgr+".kubeconfig"),
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", in.ControllerManagerPort()),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p(certServiceAccount+".key"),
		"--root-ca-file="+p("ca.crt"),
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--cluster-cidr="+in.ClusterCIDR().String(),
		"--service-cluster-ip-range="+in.ServiceCIDR().String(),
		"--leader-elect=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	return l.startHostProcess("kube-scheduler",
		"--kubeconfig="+p(certScheduler+".kubeconfig"),
		"--authentication-kubeconfig="+p(certScheduler+".kubeconfig"),
		"--authorization-kubeconfig="+p(certScheduler+".kubeconfig"),
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", in.SchedulerPort()),
		"--leader-elect=false",
		"--v=1",
	)
}

// adminTLS returns a TLS configuration with the admin's client certificate
// that verifies the kube-apiserver against the lab's CA.
func (l *Lab) adminTLS() (*tls.Config, error) {
	dir := l.inst.PKIDir()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certAdmin+".crt"), filepath.Join(dir, certAdmin+".key"))
	if err != nil {
		return nil, fmt.Errorf("failed to load the admin certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func waitHTTP(ctx context.Context, url string, tlsCfg *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	var lastErr error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s returned %s", url, resp.Status)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(250 * time.Millisecond):
		}
	}
}
