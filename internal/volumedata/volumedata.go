// Package volumedata carries the contents of a pod's emptyDir volumes from
// the source node to the restored pod. CRIU saves a container's writable
// layer but no mounted volume, so without this an emptyDir starts empty in
// the restored pod.
//
// The source agent packs the volumes into one tar stream (Pack) while the
// source is frozen, so the files match the memory checkpoint. The stream
// travels in the volume data image, and an init container of the restored
// pod, the only one that runs before the restored containers, unpacks it
// into the new pod's volumes (Extract). The package depends on nothing
// but the standard library and golang.org/x/sys, so the copier that runs
// in the user's pod stays small.
//
// The tar stream holds one top-level directory per volume, named after the
// volume, with the volume's contents below it. Each entry keeps its mode,
// owner, group, modification and access times with nanoseconds, hard links
// and symbolic links. Sockets are skipped: a restored process binds its
// socket again. Device nodes are rejected.
package volumedata

import (
	"path"
	"path/filepath"
)

// Names and paths shared by the source agent, the controller and the copier.
const (
	// ContainerName is the name of the init container that restores the
	// volumes, and the name under which the transfer server offers the
	// volume data image. The source agent rejects a pod that has a
	// container of this name.
	ContainerName = "lpm-volume-restore"
	// CopierPath is the copier program inside the volume data image.
	CopierPath = "/lpm-volume-restore"
	// DataPath is the tar stream of the volumes inside the volume data
	// image.
	DataPath = "/lpm-volume-data.tar"
	// MountRoot is where the init container mounts each carried volume, as
	// MountRoot/<volume name>.
	MountRoot = "/lpm/volumes"
	// emptyDirPluginDir is the kubelet's directory of emptyDir volumes in
	// a pod's volume directory: the plugin name kubernetes.io/empty-dir with
	// "/" escaped as "~" (k8s.io/kubernetes pkg/volume/emptydir).
	emptyDirPluginDir = "kubernetes.io~empty-dir"
)

// PodVolumeDir returns the directory in which the kubelet keeps the
// emptyDir volume name of the pod with podUID, below the kubelet's pods
// directory (/var/lib/kubelet/pods by default):
// <podsDir>/<pod UID>/volumes/kubernetes.io~empty-dir/<name>.
func PodVolumeDir(podsDir, podUID, name string) string {
	return filepath.Join(podsDir, podUID, "volumes", emptyDirPluginDir, name)
}

// MountPath returns where the init container mounts the volume name.
func MountPath(name string) string {
	return path.Join(MountRoot, name)
}

// Volume is one emptyDir volume to pack.
type Volume struct {
	// Name is the volume's name in the pod spec.
	Name string
	// Dir is the volume's directory as the packer sees it.
	Dir string
}

// Stats count what Pack or Measure found, or what Extract wrote.
type Stats struct {
	// DataBytes is the size of the regular files' contents.
	DataBytes int64
	// Entries counts files, directories, links and FIFOs, without the
	// volumes' own directories.
	Entries int64
	// SkippedSockets counts the sockets left out.
	SkippedSockets int64
	// Volumes holds the figures of each volume by name.
	Volumes map[string]VolumeStats
}

// VolumeStats are the figures of one volume.
type VolumeStats struct {
	DataBytes int64
	Entries   int64
}

func (s *Stats) add(volume string, dataBytes, entries int64) {
	if s.Volumes == nil {
		s.Volumes = map[string]VolumeStats{}
	}
	v := s.Volumes[volume]
	v.DataBytes += dataBytes
	v.Entries += entries
	s.Volumes[volume] = v
	s.DataBytes += dataBytes
	s.Entries += entries
}
