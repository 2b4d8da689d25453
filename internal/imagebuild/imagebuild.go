// Package imagebuild builds OCI images from files on disk, without a
// container engine, and writes them as archives that `ctr images import`
// and `docker load` read. The same inputs give the same image digest: every
// file gets the Unix epoch as its time, root as its owner and a fixed
// order, and the configuration carries no creation time or history.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one file of an image's single layer.
type File struct {
	// Path is the absolute path inside the image.
	Path string
	// Source is a file on disk to copy; Data is used when Source is empty.
	Source string
	Data   []byte
	// Mode is the permission bits; 0 means 0755 for Source and 0644 for
	// Data.
	Mode int64
}

// Spec describes an image.
type Spec struct {
	// Ref is the image reference, for example "localhost/lpm/agent:dev".
	Ref        string
	Files      []File
	Dirs       []string
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Labels     map[string]string
	// OS and Architecture default to linux and amd64.
	OS           string
	Architecture string
}

// Image is a built image with its reference.
type Image struct {
	Ref   name.Tag
	Image v1.Image
}

// Build assembles the image of spec.
func Build(spec Spec) (Image, error) {
	ref, err := name.NewTag(spec.Ref, name.WeakValidation)
	if err != nil {
		return Image{}, fmt.Errorf("invalid image reference %q: %w", spec.Ref, err)
	}
	layerData, err := layerTar(spec)
	if err != nil {
		return Image{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	})
	if err != nil {
		return Image{}, fmt.Errorf("failed to create layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = spec.OS, spec.Architecture
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = "amd64"
	}
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.History = nil
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = spec.Env
	cf.Config.User = spec.User
	cf.Config.WorkingDir = spec.WorkingDir
	cf.Config.Labels = spec.Labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return Image{}, err
	}
	return Image{Ref: ref, Image: img}, nil
}

// layerTar returns the layer as an uncompressed tar: parent directories
// first, then every entry in path order.
func layerTar(spec Spec) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	entries := map[string]entry{}
	addDir := func(p string) {
		for d := p; d != "/" && d != "."; d = path.Dir(d) {
			name := strings.TrimPrefix(d, "/") + "/"
			if _, ok := entries[name]; !ok {
				entries[name] = entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
			}
		}
	}
	for _, d := range spec.Dirs {
		if !path.IsAbs(d) {
			return nil, fmt.Errorf("invalid directory %q: want an absolute path", d)
		}
		addDir(path.Clean(d))
	}
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("invalid file path %q: want an absolute path", f.Path)
		}
		data, mode := f.Data, f.Mode
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, fmt.Errorf("failed to read %s: %w", f.Source, err)
			}
			if mode == 0 {
				mode = 0o755
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		p := path.Clean(f.Path)
		addDir(path.Dir(p))
		name := strings.TrimPrefix(p, "/")
		entries[name] = entry{
			hdr:  tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))},
			data: data,
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = time.Unix(0, 0)
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes images to a docker-archive tar at path, which
// `ctr images import` and `docker load` read.
func WriteArchive(path string, images ...Image) error {
	refs := map[name.Reference]v1.Image{}
	for _, img := range images {
		refs[img.Ref] = img.Image
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		return fmt.Errorf("failed to write image archive %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// ID returns the image's ID: the digest of its configuration, which the
// CRI reports as the image ID.
func (img Image) ID() (string, error) {
	h, err := img.Image.ConfigName()
	if err != nil {
		return "", err
	}
	return h.String(), nil
}
