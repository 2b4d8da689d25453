package agent_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// fixedPeer replaces the TokenReview in the measurement and accepts one
// token. The measured path is the TLS stream and the import.
type fixedPeer struct{ token string }

func (f fixedPeer) Authenticate(_ context.Context, token string) (*transfer.Peer, error) {
	if token != f.token {
		return nil, errors.New("unknown token")
	}
	return &transfer.Peer{Username: peerUser, NodeName: "node-b"}, nil
}

type fixedFingerprints map[string]string

func (f fixedFingerprints) Fingerprint(_ context.Context, node string) (string, error) {
	if fp, ok := f[node]; ok {
		return fp, nil
	}
	return "", errors.New("no NodeAgent")
}

// TestMeasureBuildImport measures building a checkpoint image from an
// archive (one hashing and validating pass) and importing it into a real
// containerd, from the local file and over the direct transfer on
// loopback. It runs only with LPM_MEASURE set, for example
// LPM_MEASURE=100,1024 (archive sizes in MiB).
func TestMeasureBuildImport(t *testing.T) {
	sizes := os.Getenv("LPM_MEASURE")
	if sizes == "" {
		t.Skip("skipping: set LPM_MEASURE to archive sizes in MiB, for example 100,1024")
	}
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	node := noderoot.Start(t, noderoot.Config{Name: "measure", SandboxImage: "localhost/none:v1",
		RestoreViaCreate: true})
	rt, err := runtime.Connect(ctx, node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rt.Close() }()

	for _, field := range splitComma(sizes) {
		mib, err := strconv.Atoi(field)
		if err != nil {
			t.Fatalf("invalid size %q", field)
		}
		measure(ctx, t, rt, int64(mib)<<20)
	}
}

func measure(ctx context.Context, t *testing.T, rt *runtime.Runtime, pagesBytes int64) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.tar")
	archivetest.WriteFile(t, path, archivetest.Options{PagesBytes: pagesBytes})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	img, _ := testenv.BuildCheckpointImage(t, path, "measure")
	build := time.Since(start)

	size := strconv.FormatInt(pagesBytes>>20, 10)
	stored := importTimed(ctx, t, rt, runtime.ImportRequest{Name: "localhost/lpm/measure/stored:" + size,
		Index: img.Descriptor()}, img)
	local := importTimed(ctx, t, rt, runtime.ImportRequest{Name: "localhost/lpm/measure/local:" + size,
		Index: img.Descriptor(), ProcRoot: "/proc"}, img)
	direct := measureDirect(ctx, t, rt, img, pagesBytes)
	mibs := float64(st.Size()) / (1 << 20)
	t.Logf("archive %.0f MiB: build %s (%.0f MiB/s); import from file through the content store %s "+
		"(%.0f MiB/s), into the snapshot %s (%.0f MiB/s); direct transfer and import %s (%.0f MiB/s)", mibs,
		build.Round(time.Millisecond), mibs/build.Seconds(), stored.Round(time.Millisecond),
		mibs/stored.Seconds(), local.Round(time.Millisecond), mibs/local.Seconds(),
		direct.Round(time.Millisecond), mibs/direct.Seconds())
}

// importTimed imports an image until the CRI reports it, removes it again
// and returns how long the import took.
func importTimed(ctx context.Context, t *testing.T, rt *runtime.Runtime, req runtime.ImportRequest,
	src runtime.BlobSource) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := rt.Import(ctx, req, src); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.WaitForCRIImage(ctx, req.Name); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if err := rt.RemoveImage(ctx, req.Name); err != nil {
		t.Fatal(err)
	}
	return elapsed
}

func measureDirect(ctx context.Context, t *testing.T, rt *runtime.Runtime, img *ckptimage.Image,
	pagesBytes int64) time.Duration {
	clk := clocktesting.NewFakePassiveClock(time.Now())
	source, err := transfer.NewIdentity("node-a", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	target, err := transfer.NewIdentity("node-b", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	offers := &transfer.OfferSet{}
	offers.Set("measure", &transfer.Offer{TargetNode: "node-b",
		Images: map[string]*ckptimage.Image{"counter": img}})
	server := transfer.NewServer(source, fixedPeer{token: "t"},
		fixedFingerprints{"node-b": target.Fingerprint}, offers, clk, logr.Discard())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: server, TLSConfig: server.TLSConfig(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer func() { _ = srv.Close() }()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := transfer.NewClient(target, tokenFile, clk).Source(ln.Addr().String(), source.Fingerprint, "measure",
		"counter")

	return importTimed(ctx, t, rt, runtime.ImportRequest{Name: "localhost/lpm/measure/direct:" +
		strconv.FormatInt(pagesBytes>>20, 10), Index: img.Descriptor(), ProcRoot: "/proc"}, src)
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
