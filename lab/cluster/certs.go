package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/lpm-dev/lpm/lab/pki"
)

// Names of the lab's certificates in the PKI directory.
const (
	certAPIServer        = "apiserver"
	certAPIServerKubelet = "apiserver-kubelet-client"
	certAdmin            = "admin"
	certControllerMgr    = "controller-manager"
	certScheduler        = "scheduler"
	certServiceAccount   = "service-account"
	certProxy            = "kube-proxy"
	// apiServerKubeletUser is the user the kube-apiserver presents to the
	// kubelets; RBAC grants it the kubelet API.
	apiServerKubeletUser = "kube-apiserver-kubelet-client"
)

// writePKI issues every certificate of the control plane and of each node,
// and writes the kubeconfigs that use them.
func (l *Lab) writePKI() error {
	now := l.clock()
	dir := l.inst.PKIDir()
	ca, err := pki.NewCA(dir, "lpm-lab-"+l.inst.Name+"-ca", now)
	if err != nil {
		return err
	}
	bridge := net.IP(l.inst.BridgeIP().AsSlice())
	certs := []pki.Cert{
		{
			Name: certAPIServer, CommonName: "kube-apiserver", Server: true,
			DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local", "localhost"},
			IPs: []net.IP{bridge, net.IP(l.inst.KubernetesServiceIP().AsSlice()), net.ParseIP("127.0.0.1")},
		},
		{Name: certAPIServerKubelet, CommonName: apiServerKubeletUser, Client: true},
		{Name: certAdmin, CommonName: "lpm-lab-admin", Organizations: []string{"system:masters"}, Client: true},
		{Name: certControllerMgr, CommonName: "system:kube-controller-manager", Client: true},
		{Name: certScheduler, CommonName: "system:kube-scheduler", Client: true},
		{Name: certProxy, CommonName: "system:kube-proxy", Client: true},
	}
	for _, c := range certs {
		if err := ca.Issue(c, now); err != nil {
			return err
		}
	}
	if err := ca.WriteServiceAccountKey(certServiceAccount); err != nil {
		return err
	}
	server := l.inst.APIServerURL()
	for _, name := range []string{certAdmin, certControllerMgr, certScheduler} {
		kc := pki.Kubeconfig(server, ca.CertFile("ca"), ca.CertFile(name), ca.KeyFile(name))
		if err := os.WriteFile(filepath.Join(dir, name+".kubeconfig"), []byte(kc), 0o600); err != nil {
			return fmt.Errorf("failed to write kubeconfig: %w", err)
		}
	}
	return nil
}

// writeNodePKI gives node i its own copy of what it needs: the CA
// certificate, the kubelet's client and serving certificates, and the
// kube-proxy credentials. Only this directory is bound into the node, so
// the node cannot read the lab's CA key or the admin credentials.
func (l *Lab) writeNodePKI(i int, configDir string) error {
	now := l.clock()
	ca, err := pki.LoadCA(l.inst.PKIDir())
	if err != nil {
		return err
	}
	nodeCA := &pki.CA{Dir: configDir}
	name := l.inst.NodeName(i)
	nodeIP := net.IP(l.inst.NodeIP(i).AsSlice())
	caPEM, err := os.ReadFile(ca.CertFile("ca"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(nodeCA.CertFile("ca"), caPEM, 0o644); err != nil {
		return err
	}
	issued := []pki.Cert{
		{Name: "kubelet-client", CommonName: "system:node:" + name, Organizations: []string{"system:nodes"},
			Client: true},
		{Name: "kubelet-serving", CommonName: "system:node:" + name, Organizations: []string{"system:nodes"},
			DNSNames: []string{name}, IPs: []net.IP{nodeIP}, Server: true},
	}
	for _, c := range issued {
		if err := ca.Issue(c, now); err != nil {
			return err
		}
		moves := [][2]string{
			{ca.CertFile(c.Name), nodeCA.CertFile(c.Name)},
			{ca.KeyFile(c.Name), nodeCA.KeyFile(c.Name)},
		}
		for _, f := range moves {
			if err := moveFile(f[0], f[1]); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{certProxy + ".crt", certProxy + ".key"} {
		if err := copyFile(filepath.Join(ca.Dir, f), filepath.Join(configDir, f)); err != nil {
			return err
		}
	}
	server := l.inst.APIServerURL()
	kubeletKC := pki.Kubeconfig(server, nodeCA.CertFile("ca"), nodeCA.CertFile("kubelet-client"),
		nodeCA.KeyFile("kubelet-client"))
	proxyKC := pki.Kubeconfig(server, nodeCA.CertFile("ca"), nodeCA.CertFile(certProxy), nodeCA.KeyFile(certProxy))
	if err := os.WriteFile(filepath.Join(configDir, "kubelet.kubeconfig"), []byte(kubeletKC), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(configDir, "kube-proxy.kubeconfig"), []byte(proxyKC), 0o600)
}

func moveFile(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("failed to move %s: %w", from, err)
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	st, err := os.Stat(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to, data, st.Mode().Perm()); err != nil {
		return fmt.Errorf("failed to copy %s: %w", from, err)
	}
	return nil
}
