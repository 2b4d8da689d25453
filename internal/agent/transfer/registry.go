package transfer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
)

// RegistryAuth is one registry's credentials from a dockerconfigjson.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// ParseDockerConfig returns the credentials for registry (host[:port]) from
// the content of a kubernetes.io/dockerconfigjson Secret, or nil when it
// has none for that registry.
func ParseDockerConfig(data []byte, registry string) (*RegistryAuth, error) {
	var cfg struct {
		Auths map[string]RegistryAuth `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("invalid dockerconfigjson: %w", err)
	}
	for key, auth := range cfg.Auths {
		host := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		if host != registry {
			continue
		}
		if auth.Auth != "" && auth.Username == "" {
			decoded, err := base64.StdEncoding.DecodeString(auth.Auth)
			if err != nil {
				return nil, fmt.Errorf("invalid auth for registry %s: %w", registry, err)
			}
			auth.Username, auth.Password, _ = strings.Cut(string(decoded), ":")
		}
		return &auth, nil
	}
	return nil, nil
}

// Authenticator returns the credentials for go-containerregistry.
func (a *RegistryAuth) Authenticator() authn.Authenticator {
	if a == nil {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password,
		IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
}

// CRI returns the credentials for a CRI PullImage.
func (a *RegistryAuth) CRI() *runtimeapi.AuthConfig {
	if a == nil {
		return nil
	}
	return &runtimeapi.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken}
}

// Pusher pushes checkpoint images to registries.
type Pusher struct {
	// Insecure lists registries (host:port) reached over plain HTTP.
	Insecure []string
	// Transport is the HTTP transport; http.DefaultTransport when nil.
	Transport http.RoundTripper
}

// Push uploads the image's layer (streamed from the archive, no copy),
// config, manifest and index, and tags the index with ref. It returns the
// reference by digest, which names exactly the pushed content.
func (p *Pusher) Push(ctx context.Context, img *ckptimage.Image, ref string, auth *RegistryAuth) (string, error) {
	var opts []name.Option
	tag, err := name.NewTag(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	for _, host := range p.Insecure {
		if tag.RegistryStr() == host {
			tag, err = name.NewTag(ref, name.Insecure)
			if err != nil {
				return "", err
			}
		}
	}
	transport := p.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	remoteOpts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth.Authenticator()),
		remote.WithTransport(transport)}
	repo := tag.Context()

	if err := remote.WriteLayer(repo, img.ArchiveLayer(), remoteOpts...); err != nil {
		return "", fmt.Errorf("failed to push the checkpoint archive to %s: %w", repo, err)
	}
	if err := remote.WriteLayer(repo, static.NewLayer(img.Config, types.OCIConfigJSON), remoteOpts...); err != nil {
		return "", fmt.Errorf("failed to push the image config to %s: %w", repo, err)
	}
	manifestRef := repo.Digest(img.ManifestDigest().String())
	if err := remote.Put(manifestRef, ckptimage.RawManifest{Data: img.Manifest, Type: types.OCIManifestSchema1},
		remoteOpts...); err != nil {
		return "", fmt.Errorf("failed to push the image manifest to %s: %w", repo, err)
	}
	if err := remote.Put(tag, ckptimage.RawManifest{Data: img.Index, Type: types.OCIImageIndex},
		remoteOpts...); err != nil {
		return "", fmt.Errorf("failed to push the image index to %s: %w", tag, err)
	}
	return repo.Digest(img.Digest().String()).String(), nil
}

// Delete removes a pushed image from its registry, where the registry
// allows deletes.
func (p *Pusher) Delete(ctx context.Context, digestRef string, auth *RegistryAuth) error {
	ref, err := name.NewDigest(digestRef)
	if err != nil {
		return fmt.Errorf("invalid image reference %q: %w", digestRef, err)
	}
	for _, host := range p.Insecure {
		if ref.RegistryStr() == host {
			if ref, err = name.NewDigest(digestRef, name.Insecure); err != nil {
				return err
			}
		}
	}
	if err := remote.Delete(ref, remote.WithContext(ctx), remote.WithAuth(auth.Authenticator())); err != nil {
		return fmt.Errorf("failed to delete %s from its registry: %w", digestRef, err)
	}
	return nil
}
