package transfer

import (
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var identityNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func TestIdentityKeptAcrossLoads(t *testing.T) {
	dir := t.TempDir()
	created, err := NewIdentity("node-a", identityNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveIdentity(dir, created); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("identity file mode = %s, want 0600", mode)
	}
	loaded, err := LoadIdentity(dir, "node-a", identityNow.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("LoadIdentity() error = %v", err)
	}
	if loaded.Fingerprint != created.Fingerprint {
		t.Errorf("loaded fingerprint = %s, want the saved %s", loaded.Fingerprint, created.Fingerprint)
	}
	// The loaded key must be the saved one: a handshake pins the
	// certificate, and only its key can prove it.
	if err := verifyPin(loaded.Certificate.Certificate, created.Fingerprint, identityNow); err != nil {
		t.Errorf("loaded certificate fails the saved pin: %v", err)
	}
	if !created.Certificate.PrivateKey.(*ecdsa.PrivateKey).Equal(loaded.Certificate.PrivateKey) {
		t.Error("loaded key differs from the saved key")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files after the save, want only %s", len(entries), IdentityFile)
	}
}

func TestLoadIdentityRejected(t *testing.T) {
	other, err := NewIdentity("node-a", identityNow)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(saveTo(t, other))
	if err != nil {
		t.Fatal(err)
	}
	_, keyBlock, _ := strings.Cut(string(otherKey), "-----END CERTIFICATE-----\n")

	tests := []struct {
		name     string
		write    func(t *testing.T, dir string, id *Identity)
		node     string
		now      time.Time
		wantErr  string
		notExist bool
	}{
		{
			name:     "missing file",
			write:    func(*testing.T, string, *Identity) {},
			notExist: true,
		},
		{
			name:    "corrupt file",
			write:   writeIdentityFile("not a PEM file\n", 0o600),
			wantErr: "invalid transfer identity",
		},
		{
			name: "key of another certificate",
			write: func(t *testing.T, dir string, id *Identity) {
				saved, err := os.ReadFile(filepath.Join(dir, IdentityFile))
				if err != nil {
					t.Fatal(err)
				}
				cert, _, _ := strings.Cut(string(saved), "-----END CERTIFICATE-----\n")
				writeIdentityFile(cert+"-----END CERTIFICATE-----\n"+keyBlock, 0o600)(t, dir, id)
			},
			wantErr: "invalid transfer identity",
		},
		{
			name: "readable by others",
			write: func(t *testing.T, dir string, _ *Identity) {
				if err := os.Chmod(filepath.Join(dir, IdentityFile), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "want 0600",
		},
		{
			name:    "another node",
			node:    "node-b",
			wantErr: `is for "lpm-agent:node-a", not node node-b`,
		},
		{
			name:    "near expiry",
			now:     identityNow.Add(certificateLifetime - RenewBefore + time.Hour),
			wantErr: "renewed 720h0m0s before expiry",
		},
		{
			name:    "expired",
			now:     identityNow.Add(certificateLifetime + time.Hour),
			wantErr: "renewed 720h0m0s before expiry",
		},
		{
			name:    "not yet valid",
			now:     identityNow.Add(-time.Hour),
			wantErr: "valid from",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			id, err := NewIdentity("node-a", identityNow)
			if err != nil {
				t.Fatal(err)
			}
			if err := SaveIdentity(dir, id); err != nil {
				t.Fatal(err)
			}
			if tc.notExist {
				if err := os.Remove(filepath.Join(dir, IdentityFile)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.write != nil {
				tc.write(t, dir, id)
			}
			node, now := tc.node, tc.now
			if node == "" {
				node = "node-a"
			}
			if now.IsZero() {
				now = identityNow
			}

			got, err := LoadIdentity(dir, node, now)
			if err == nil {
				t.Fatalf("LoadIdentity() = %s, want an error", got.Fingerprint)
			}
			if tc.notExist != errors.Is(err, os.ErrNotExist) {
				t.Errorf("LoadIdentity() error = %v, want os.ErrNotExist %v", err, tc.notExist)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadIdentity() error = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestSaveIdentityReplacesFile(t *testing.T) {
	dir := t.TempDir()
	writeIdentityFile("corrupt", 0o644)(t, dir, nil)
	id, err := NewIdentity("node-a", identityNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveIdentity(dir, id); err != nil {
		t.Fatal(err)
	}

	loaded, err := LoadIdentity(dir, "node-a", identityNow)
	if err != nil {
		t.Fatalf("LoadIdentity() after replacing a corrupt file error = %v", err)
	}
	if loaded.Fingerprint != id.Fingerprint {
		t.Errorf("loaded fingerprint = %s, want %s", loaded.Fingerprint, id.Fingerprint)
	}
}

// saveTo saves id in a new directory and returns the file's path.
func saveTo(t *testing.T, id *Identity) string {
	t.Helper()
	dir := t.TempDir()
	if err := SaveIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, IdentityFile)
}

func writeIdentityFile(data string, mode os.FileMode) func(*testing.T, string, *Identity) {
	return func(t *testing.T, dir string, _ *Identity) {
		t.Helper()
		path := filepath.Join(dir, IdentityFile)
		if err := os.WriteFile(path, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}
