package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lpm")
	store, err := Open(dir)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	started := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	rec := &Record{UID: "4f1d2c3b-aaaa", Namespace: "default", Name: "m", Role: RoleSource,
		CheckpointStarted: &started, Paused: []string{"abc"},
		Containers: []Container{{Name: "app", ArchivePath: "/a.tar", Index: []byte(`{"x":1}`)}}}

	if err := store.Save(rec); err != nil {
		t.Fatalf("Save() error = %v", err)
	}
	got, err := store.Load(rec.UID, RoleSource)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
	list, err := store.List()
	if err != nil || len(list) != 1 {
		t.Errorf("List() = %v, %v; want one record", list, err)
	}

	for _, p := range []string{dir, filepath.Join(dir, "migrations")} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o700 {
			t.Errorf("mode of %s = %o, want 700", p, info.Mode().Perm())
		}
	}
	info, err := os.Stat(filepath.Join(dir, "migrations", rec.UID+".source.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode of the record = %o, want 600", info.Mode().Perm())
	}

	if err := store.Delete(rec.UID, RoleSource); err != nil {
		t.Fatalf("Delete() error = %v", err)
	}
	if got, err := store.Load(rec.UID, RoleSource); err != nil || got != nil {
		t.Errorf("Load() after Delete = %v, %v; want nil, nil", got, err)
	}
}

func TestStoreRejectsPathUID(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"../x", "", "a/b", "x.json"} {
		if err := store.Save(&Record{UID: uid, Role: RoleSource}); err == nil {
			t.Errorf("Save(%q) succeeded, want an error", uid)
		}
	}
}

func TestOpenNarrowsMode(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("mode = %o, want 700", info.Mode().Perm())
	}
}
