package kubelet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const testToken = "agent-token"

// fakeKubelet answers /checkpoint/ the way the kubelet's server (Kubernetes
// 1.37, pkg/kubelet/server) does: the answer for a path is chosen by the
// test, and the request is checked the way the kubelet's authn filter and
// handler read it.
type fakeKubelet struct {
	t          *testing.T
	status     int
	body       string
	delay      time.Duration
	gateOff    bool
	gotTimeout string
	gotPath    string
}

func (k *fakeKubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if k.gateOff || !strings.HasPrefix(r.URL.Path, "/checkpoint/") {
		http.NotFound(w, r) // The route is not registered without the gate.
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	k.gotPath = r.URL.Path
	k.gotTimeout = r.URL.Query().Get("timeout")
	if k.delay > 0 {
		select {
		case <-time.After(k.delay):
		case <-r.Context().Done():
			// Abort without the 200 that returning would send.
			panic(http.ErrAbortHandler)
		}
	}
	w.WriteHeader(k.status)
	_, _ = fmt.Fprint(w, k.body)
}

func newTestClient(t *testing.T, server *httptest.Server, mutate func(*Config)) *Client {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, portText, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Address: host, Port: port, CAFile: caFile, TokenFile: tokenFile, Log: logr.Discard()}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return c
}

func TestCheckpointSuccess(t *testing.T) {
	archive := "/var/lib/kubelet/checkpoints/checkpoint-web_default-app-2026-12-04T15:17:44Z.tar"
	k := &fakeKubelet{t: t, status: http.StatusOK, body: `{"items":["` + archive + `"]}`}
	server := httptest.NewTLSServer(k)
	defer server.Close()
	c := newTestClient(t, server, nil)

	got, err := c.Checkpoint(context.Background(), "default", "web", "app", 90*time.Second+time.Millisecond)

	if err != nil {
		t.Fatalf("Checkpoint() error = %v", err)
	}
	if got != archive {
		t.Errorf("Checkpoint() = %q, want %q", got, archive)
	}
	if k.gotPath != "/checkpoint/default/web/app" {
		t.Errorf("request path = %q, want /checkpoint/default/web/app", k.gotPath)
	}
	if k.gotTimeout != "91" {
		t.Errorf("timeout parameter = %q, want 91 (seconds, rounded up)", k.gotTimeout)
	}
}

func TestCheckpointErrors(t *testing.T) {
	failed := func(inner string) string {
		return "checkpointing of default/web/app failed (" + inner + ")"
	}
	cases := []struct {
		name       string
		kubelet    fakeKubelet
		wantReason lpmv1.Reason
		wantStatus int
	}{
		{
			name:       "checkpoint gate off",
			kubelet:    fakeKubelet{gateOff: true},
			wantReason: lpmv1.ReasonCheckpointAPIDisabled,
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "pod gone",
			kubelet:    fakeKubelet{status: http.StatusNotFound, body: "pod does not exist"},
			wantReason: lpmv1.ReasonPodGone,
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "container gone",
			kubelet:    fakeKubelet{status: http.StatusNotFound, body: "container app does not exist"},
			wantReason: lpmv1.ReasonContainerGone,
			wantStatus: http.StatusNotFound,
		},
		{
			name: "container gone in runtime",
			kubelet: fakeKubelet{status: http.StatusInternalServerError,
				body: failed("container app not found")},
			wantReason: lpmv1.ReasonContainerGone,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "runtime without the method",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = Unimplemented desc = unknown method CheckpointContainer for service " +
					"runtime.v1.RuntimeService")},
			wantReason: lpmv1.ReasonRuntimeCannotCheckpoint,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "runtime method not implemented",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = Unknown desc = method CheckpointContainer not implemented")},
			wantReason: lpmv1.ReasonRuntimeCannotCheckpoint,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "criu missing or too old",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = Unknown desc = checkpoint/restore support not available: " +
					"CRIU binary not found or too old (<31600)")},
			wantReason: lpmv1.ReasonRuntimeCannotCheckpoint,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "criu disabled by configuration",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = Unknown desc = criu support is disabled by configuration")},
			wantReason: lpmv1.ReasonRuntimeCannotCheckpoint,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "runtime timeout",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = DeadlineExceeded desc = context deadline exceeded")},
			wantReason: lpmv1.ReasonCheckpointTimedOut,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "criu dump failure",
			kubelet: fakeKubelet{status: http.StatusInternalServerError, body: failed(
				"rpc error: code = Unknown desc = checkpointing container \"0123\" failed: criu failed: " +
					"type NOTIFY errno 0 path= /run/containerd/0123/criu-dump.log: file not found")},
			wantReason: lpmv1.ReasonCheckpointFailed,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name:       "token rejected",
			kubelet:    fakeKubelet{status: http.StatusUnauthorized, body: "Unauthorized"},
			wantReason: lpmv1.ReasonKubeletUnauthorized,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "no permission",
			kubelet: fakeKubelet{status: http.StatusForbidden, body: "Forbidden (user=system:serviceaccount:" +
				"lpm-system:lpm-agent, verb=create, resource=nodes, subresource(s)=[checkpoint])"},
			wantReason: lpmv1.ReasonKubeletUnauthorized,
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "kubelet overloaded",
			kubelet:    fakeKubelet{status: http.StatusServiceUnavailable, body: "try later"},
			wantReason: lpmv1.ReasonKubeletUnavailable,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name:       "success without a path",
			kubelet:    fakeKubelet{status: http.StatusOK, body: `{"items":[]}`},
			wantReason: lpmv1.ReasonCheckpointFailed,
			wantStatus: http.StatusOK,
		},
		{
			name:       "success with a relative path",
			kubelet:    fakeKubelet{status: http.StatusOK, body: `{"items":["../../etc/passwd"]}`},
			wantReason: lpmv1.ReasonCheckpointFailed,
			wantStatus: http.StatusOK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.kubelet
			k.t = t
			server := httptest.NewTLSServer(&k)
			defer server.Close()
			c := newTestClient(t, server, nil)

			_, err := c.Checkpoint(context.Background(), "default", "web", "app", time.Minute)

			var kerr *Error
			if !errors.As(err, &kerr) {
				t.Fatalf("Checkpoint() error = %v, want *kubelet.Error", err)
			}
			if kerr.Reason != tc.wantReason {
				t.Errorf("Reason = %s, want %s (error %v)", kerr.Reason, tc.wantReason, err)
			}
			if kerr.StatusCode != tc.wantStatus {
				t.Errorf("StatusCode = %d, want %d", kerr.StatusCode, tc.wantStatus)
			}
		})
	}
}

func TestCheckpointTransportErrors(t *testing.T) {
	t.Run("kubelet down", func(t *testing.T) {
		server := httptest.NewTLSServer(&fakeKubelet{t: t})
		c := newTestClient(t, server, nil)
		server.Close()

		_, err := c.Checkpoint(context.Background(), "default", "web", "app", time.Minute)

		assertReason(t, err, lpmv1.ReasonKubeletUnavailable)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		server := httptest.NewTLSServer(&fakeKubelet{t: t, status: http.StatusOK})
		defer server.Close()
		otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
		if err := os.WriteFile(otherCA, selfSignedPEM(t), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newTestClient(t, server, func(cfg *Config) { cfg.CAFile = otherCA })

		_, err := c.Checkpoint(context.Background(), "default", "web", "app", time.Minute)

		assertReason(t, err, lpmv1.ReasonKubeletUnavailable)
		if err != nil && !strings.Contains(err.Error(), "not trusted") {
			t.Errorf("error = %v, want it to say the certificate is not trusted", err)
		}
	})
	t.Run("no answer in time", func(t *testing.T) {
		server := httptest.NewTLSServer(&fakeKubelet{t: t, status: http.StatusOK, delay: 5 * time.Second})
		defer server.Close()
		c := newTestClient(t, server, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()

		_, err := c.Checkpoint(ctx, "default", "web", "app", time.Minute)

		assertReason(t, err, lpmv1.ReasonCheckpointTimedOut)
	})
	t.Run("token unreadable", func(t *testing.T) {
		server := httptest.NewTLSServer(&fakeKubelet{t: t, status: http.StatusOK})
		defer server.Close()
		c := newTestClient(t, server, func(cfg *Config) { cfg.TokenFile = "/nonexistent/token" })

		_, err := c.Checkpoint(context.Background(), "default", "web", "app", time.Minute)

		assertReason(t, err, lpmv1.ReasonKubeletUnauthorized)
	})
	t.Run("skip verification", func(t *testing.T) {
		k := &fakeKubelet{t: t, status: http.StatusOK, body: `{"items":["/a.tar"]}`}
		server := httptest.NewTLSServer(k)
		defer server.Close()
		c := newTestClient(t, server, func(cfg *Config) { cfg.CAFile = ""; cfg.InsecureSkipVerify = true })

		if _, err := c.Checkpoint(context.Background(), "default", "web", "app", 0); err != nil {
			t.Errorf("Checkpoint() error = %v", err)
		}
		if k.gotTimeout != "" {
			t.Errorf("timeout parameter = %q, want none for a zero timeout", k.gotTimeout)
		}
	})
}

func TestNewRequiresVerification(t *testing.T) {
	if _, err := New(Config{Address: "127.0.0.1", TokenFile: "t"}); err == nil {
		t.Error("New() without a CA file or an explicit skip succeeded, want an error")
	}
}

func TestProbeCheckpointAPI(t *testing.T) {
	cases := []struct {
		name       string
		kubelet    fakeKubelet
		wantReason lpmv1.Reason
	}{
		{name: "served", kubelet: fakeKubelet{status: http.StatusNotFound, body: "pod does not exist"}},
		{name: "gate off", kubelet: fakeKubelet{gateOff: true}, wantReason: lpmv1.ReasonCheckpointAPIDisabled},
		{name: "forbidden", kubelet: fakeKubelet{status: http.StatusForbidden, body: "Forbidden"},
			wantReason: lpmv1.ReasonKubeletUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.kubelet
			k.t = t
			server := httptest.NewTLSServer(&k)
			defer server.Close()
			c := newTestClient(t, server, nil)

			err := c.ProbeCheckpointAPI(context.Background())

			if tc.wantReason == "" {
				if err != nil {
					t.Errorf("ProbeCheckpointAPI() error = %v, want nil", err)
				}
				return
			}
			assertReason(t, err, tc.wantReason)
		})
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func assertReason(t *testing.T, err error, want lpmv1.Reason) {
	t.Helper()
	var kerr *Error
	if !errors.As(err, &kerr) {
		t.Fatalf("error = %v, want *kubelet.Error with reason %s", err, want)
	}
	if kerr.Reason != want {
		t.Errorf("Reason = %s, want %s (error %v)", kerr.Reason, want, err)
	}
}
