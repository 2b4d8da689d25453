// Package state keeps the agent's per-migration records on the node, so
// that an agent that restarts mid-migration knows what it paused, which
// archives and images it made and what it imported. The directory is mode
// 0700 and every file 0600, because records name checkpoint archives,
// which hold the memory of the checkpointed processes.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Role says which side of a migration a record belongs to.
type Role string

// Roles of a record.
const (
	RoleSource Role = "source"
	RoleTarget Role = "target"
)

// Record is what the agent remembers about one migration on this node.
type Record struct {
	// UID, Namespace and Name identify the PodMigration.
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Role      Role   `json:"role"`

	// CheckpointStarted is set before the first container is paused or
	// checkpointed; CheckpointDone once every archive is recorded. A record
	// with the first and not the second belongs to a checkpoint that the
	// agent did not finish, which it never resumes.
	CheckpointStarted *time.Time `json:"checkpointStarted,omitempty"`
	CheckpointDone    bool       `json:"checkpointDone,omitempty"`
	// Failed is set when the agent gave up on its part of the migration.
	Failed bool `json:"failed,omitempty"`
	// CutTime is when the source stopped making progress.
	CutTime *time.Time `json:"cutTime,omitempty"`
	// FreezeDeadline is when the kubelet could first kill a frozen
	// container of the source because of failed liveness probes.
	FreezeDeadline *time.Time `json:"freezeDeadline,omitempty"`

	// Paused lists the runtime IDs of the containers the agent paused, in
	// the order it paused them. An ID is written before the pause.
	Paused []string `json:"paused,omitempty"`
	// Killed is set once the agent has sent SIGKILL to every process of
	// the paused containers, which die as soon as they are thawed.
	Killed bool `json:"killed,omitempty"`
	// PodUID is the UID of the source pod, so that the agent can tell
	// when that pod is being deleted even after its migration is gone.
	PodUID string `json:"podUID,omitempty"`
	// PodName is the source pod's name, in Namespace.
	PodName string `json:"podName,omitempty"`
	// Containers are the checkpointed containers (source) or the received
	// images (target).
	Containers []Container `json:"containers,omitempty"`
	// VolumeData is the source's volume data image, whose ArchivePath is
	// its layer file. The target records the imported image in Containers.
	VolumeData *Container `json:"volumeData,omitempty"`
	// RestoredPod is the name of the restored pod once the agent saw it.
	RestoredPod string `json:"restoredPod,omitempty"`
	// Finished is set when the agent has nothing more to do for the
	// migration; the record stays until its images are no longer used.
	Finished bool `json:"finished,omitempty"`
}

// Container is one container's checkpoint and image.
type Container struct {
	Name        string `json:"name"`
	ContainerID string `json:"containerID,omitempty"`
	// ArchivePath is the checkpoint archive as the agent sees it.
	ArchivePath  string `json:"archivePath,omitempty"`
	ArchiveBytes int64  `json:"archiveBytes,omitempty"`
	// Index, Manifest and Config are the checkpoint image's small blobs.
	Index    []byte `json:"index,omitempty"`
	Manifest []byte `json:"manifest,omitempty"`
	Config   []byte `json:"config,omitempty"`
	// Image is the image reference; Pushed is true once it is in a
	// registry, Imported once it is in this node's runtime.
	Image    string `json:"image,omitempty"`
	Pushed   bool   `json:"pushed,omitempty"`
	Imported bool   `json:"imported,omitempty"`
}

// Store reads and writes records in a directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

var uidPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// Open creates the directory (mode 0700) when needed and returns a store.
// An existing directory with a wider mode is narrowed.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "migrations")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create state directory %q: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to set mode of state directory %q: %w", d, err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(uid string, role Role) (string, error) {
	if !uidPattern.MatchString(uid) {
		return "", fmt.Errorf("invalid migration UID %q", uid)
	}
	if role != RoleSource && role != RoleTarget {
		return "", fmt.Errorf("invalid role %q", role)
	}
	return filepath.Join(s.dir, "migrations", uid+"."+string(role)+".json"), nil
}

// Load returns the record of one side of a migration, or nil when there is
// none.
func (s *Store) Load(uid string, role Role) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, err := s.path(uid, role)
	if err != nil {
		return nil, err
	}
	return readRecord(path)
}

func readRecord(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read state %q: %w", path, err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("failed to parse state %q: %w", path, err)
	}
	return &rec, nil
}

// Save writes a record atomically: a reader sees the old or the new one.
func (s *Store) Save(rec *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, err := s.path(rec.UID, rec.Role)
	if err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("failed to encode state of migration %s: %w", rec.UID, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write state of migration %s: %w", rec.UID, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("failed to write state of migration %s: %w", rec.UID, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("failed to sync state of migration %s: %w", rec.UID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to write state of migration %s: %w", rec.UID, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to write state of migration %s: %w", rec.UID, err)
	}
	return nil
}

// Delete removes a record. A missing record counts as deleted.
func (s *Store) Delete(uid string, role Role) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, err := s.path(uid, role)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to delete state of migration %s: %w", uid, err)
	}
	return nil
}

// List returns every record, sorted by UID.
func (s *Store) List() ([]*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths, err := filepath.Glob(filepath.Join(s.dir, "migrations", "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var records []*Record
	var errs []error
	for _, p := range paths {
		rec, err := readRecord(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec != nil {
			records = append(records, rec)
		}
	}
	return records, errors.Join(errs...)
}
