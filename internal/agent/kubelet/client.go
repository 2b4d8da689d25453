// Package kubelet calls the local kubelet's checkpoint API
// (POST /checkpoint/{namespace}/{pod}/{container}) with the agent's own
// service-account token, and turns each answer into a typed reason.
//
// The kubelet authorises the call as the nodes/checkpoint subresource with
// verb create, so the agent needs that and nothing broader: never
// nodes/proxy, and never the API server's node proxy.
package kubelet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// DefaultPort is the kubelet's secure port.
const DefaultPort = 10250

// maxBodyBytes bounds how much of a kubelet answer is read.
const maxBodyBytes = 64 << 10

// Config configures a Client.
type Config struct {
	// Address is the kubelet's host (the node's address), without a port.
	Address string
	// Port is the kubelet's port; DefaultPort when zero.
	Port int
	// CAFile is the PEM bundle that signed the kubelet's serving
	// certificate. A self-signed kubelet certificate can be its own CA.
	CAFile string
	// InsecureSkipVerify disables the verification of the kubelet's
	// serving certificate. It must be set explicitly and is logged.
	InsecureSkipVerify bool
	// TokenFile holds the bearer token the agent presents. It is read on
	// every call, because the kubelet rotates projected tokens.
	TokenFile string
	// Log receives the warning about skipped verification.
	Log logr.Logger
}

// Client calls one kubelet's checkpoint API.
type Client struct {
	base      *url.URL
	http      *http.Client
	tokenFile string
}

// New returns a client for the kubelet that cfg names.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("kubelet address is empty")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.InsecureSkipVerify:
		cfg.Log.Info("Skipping verification of the kubelet's serving certificate; "+
			"anyone who can intercept traffic to the kubelet can read the agent's token",
			"address", cfg.Address)
		tlsConfig.InsecureSkipVerify = true //nolint:gosec // Set only by an explicit, logged flag.
	case cfg.CAFile != "":
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read kubelet CA file %q: %w", cfg.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubelet CA file %q holds no PEM certificate", cfg.CAFile)
		}
		tlsConfig.RootCAs = pool
	default:
		return nil, errors.New("kubelet CA file is required unless verification is skipped explicitly")
	}

	transport := &http.Transport{
		TLSClientConfig:     tlsConfig,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        2,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		base: &url.URL{Scheme: "https", Host: net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port))},
		// Each call carries its own deadline from the context.
		http:      &http.Client{Transport: transport},
		tokenFile: cfg.TokenFile,
	}, nil
}

// Checkpoint checkpoints one container and returns the absolute path of
// the archive the kubelet wrote on the node. timeout is passed to the
// kubelet, which passes it to the runtime; the call itself ends with ctx.
// Every failure is an *Error with a reason.
func (c *Client) Checkpoint(ctx context.Context, namespace, pod, container string,
	timeout time.Duration) (string, error) {
	u := *c.base
	u.Path = path.Join("/checkpoint", namespace, pod, container)
	if timeout > 0 {
		seconds := int64((timeout + time.Second - 1) / time.Second)
		u.RawQuery = url.Values{"timeout": {strconv.FormatInt(seconds, 10)}}.Encode()
	}

	status, body, err := c.post(ctx, u.String())
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", classify(status, body)
	}
	var answer struct {
		Items []string `json:"items"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Items) != 1 || answer.Items[0] == "" {
		return "", &Error{Reason: lpmv1.ReasonCheckpointFailed, StatusCode: status,
			Message: fmt.Sprintf("kubelet returned no archive path: %q", truncate(body))}
	}
	archive := answer.Items[0]
	if !path.IsAbs(archive) || path.Clean(archive) != archive {
		return "", &Error{Reason: lpmv1.ReasonCheckpointFailed, StatusCode: status,
			Message: fmt.Sprintf("kubelet returned an invalid archive path %q", archive)}
	}
	return archive, nil
}

// ProbeCheckpointAPI checks that the kubelet serves its checkpoint API and
// lets the agent call it, without checkpointing anything: it asks for a
// pod that cannot exist and expects the kubelet's "pod does not exist".
func (c *Client) ProbeCheckpointAPI(ctx context.Context) error {
	u := *c.base
	u.Path = "/checkpoint/kube-system/lpm-probe-nonexistent.invalid/probe"
	status, body, err := c.post(ctx, u.String())
	if err != nil {
		return err
	}
	err = classify(status, body)
	var kerr *Error
	if errors.As(err, &kerr) && kerr.Reason == lpmv1.ReasonPodGone {
		return nil
	}
	return err
}

func (c *Client) post(ctx context.Context, target string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("failed to build kubelet request: %w", err)
	}
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return 0, nil, &Error{Reason: lpmv1.ReasonKubeletUnauthorized,
			Message: fmt.Sprintf("failed to read the agent's token: %v", err), Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, transportError(ctx, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err == nil {
		// A response that arrives after the deadline is discarded.
		err = ctx.Err()
	}
	if err != nil {
		return 0, nil, transportError(ctx, err)
	}
	return resp.StatusCode, body, nil
}

func transportError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return &Error{Reason: lpmv1.ReasonCheckpointTimedOut, Message: "kubelet did not answer in time", Err: err}
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return &Error{Reason: lpmv1.ReasonKubeletUnavailable,
			Message: fmt.Sprintf("kubelet serving certificate is not trusted: %v", err), Err: err}
	}
	return &Error{Reason: lpmv1.ReasonKubeletUnavailable, Message: fmt.Sprintf("kubelet is unreachable: %v", err),
		Err: err}
}

func truncate(body []byte) string {
	const max = 512
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
