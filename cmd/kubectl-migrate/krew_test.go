package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"
)

// krewManifest is the path of the krew plugin manifest template.
var krewManifest = filepath.Join("..", "..", "plugins", "krew", "migrate.yaml")

// krewPlugin has the fields of krew's plugin manifest (the Plugin type of
// sigs.k8s.io/krew/pkg/index, v0.4.3) that the manifest sets, so that a
// strict decode rejects a misspelt field.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string         `json:"version"`
		Homepage         string         `json:"homepage"`
		ShortDescription string         `json:"shortDescription"`
		Description      string         `json:"description"`
		Caveats          string         `json:"caveats"`
		Platforms        []krewPlatform `json:"platforms"`
	} `json:"spec"`
}

type krewPlatform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string `json:"uri"`
	Sha256 string `json:"sha256"`
	Bin    string `json:"bin"`
}

// renderKrewManifest renders the template as krew-release-bot does for tag.
// addURIAndSha writes the uri and a checksum of the uri itself, because
// the release archives exist only once a release is built.
func renderKrewManifest(t *testing.T, tag string) []byte {
	t.Helper()
	text, err := os.ReadFile(krewManifest)
	if err != nil {
		t.Fatalf("failed to read the krew manifest: %v", err)
	}
	funcs := template.FuncMap{
		"addURIAndSha": func(uri, tag string) string {
			uri = strings.ReplaceAll(uri, "{{ .TagName }}", tag)
			sum := sha256.Sum256([]byte(uri))
			// krew-release-bot indents the sha256 line by four spaces.
			return fmt.Sprintf("uri: %s\n    sha256: %s", uri, hex.EncodeToString(sum[:]))
		},
	}
	tmpl, err := template.New("migrate.yaml").Funcs(funcs).Option("missingkey=error").Parse(string(text))
	if err != nil {
		t.Fatalf("failed to parse the krew manifest template: %v", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]string{"TagName": tag}); err != nil {
		t.Fatalf("failed to render the krew manifest: %v", err)
	}
	return out.Bytes()
}

// The rules below repeat the validation of krew v0.4.3
// (internal/index/validation), which krew runs on install and the krew
// index runs on each manifest.
var (
	semverPattern = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	sha256Pattern = regexp.MustCompile(`^[a-f0-9]{64}$`)
	pluginName    = regexp.MustCompile(`^[\w-]+$`)
)

func TestKrewManifest(t *testing.T) {
	const tag = "v0.1.0"
	var plugin krewPlugin
	if err := yaml.UnmarshalStrict(renderKrewManifest(t, tag), &plugin); err != nil {
		t.Fatalf("rendered manifest is not a krew plugin manifest: %v", err)
	}

	if plugin.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || plugin.Kind != "Plugin" {
		t.Errorf("apiVersion, kind = %q, %q", plugin.APIVersion, plugin.Kind)
	}
	fileName := strings.TrimSuffix(filepath.Base(krewManifest), ".yaml")
	if plugin.Metadata.Name != fileName || !pluginName.MatchString(plugin.Metadata.Name) {
		t.Errorf("name = %q, want %q, the file's name", plugin.Metadata.Name, fileName)
	}
	if plugin.Spec.Version != tag || !semverPattern.MatchString(plugin.Spec.Version) {
		t.Errorf("version = %q, want the tag %q", plugin.Spec.Version, tag)
	}
	if d := plugin.Spec.ShortDescription; d == "" || strings.ContainsAny(d, "\r\n") {
		t.Errorf("shortDescription = %q, want one line", d)
	}
	if plugin.Spec.Description == "" || plugin.Spec.Caveats == "" {
		t.Error("description or caveats missing")
	}
	if len(plugin.Spec.Platforms) == 0 {
		t.Fatal("no platforms")
	}

	seen := map[string]bool{}
	for _, p := range plugin.Spec.Platforms {
		labels := p.Selector.MatchLabels
		osName, arch := labels["os"], labels["arch"]
		platform := osName + "_" + arch
		if len(labels) != 2 || osName == "" || arch == "" {
			t.Errorf("selector %v: want exactly the labels os and arch", labels)
			continue
		}
		if seen[platform] {
			t.Errorf("platform %s listed twice", platform)
		}
		seen[platform] = true

		wantURI := fmt.Sprintf("https://github.com/lpm-dev/lpm/releases/download/%s/kubectl-migrate_%s_%s.tar.gz",
			tag, tag, platform)
		if p.URI != wantURI {
			t.Errorf("%s: uri = %q, want %q", platform, p.URI, wantURI)
		}
		if !sha256Pattern.MatchString(p.Sha256) {
			t.Errorf("%s: sha256 = %q, want 64 lowercase hex digits", platform, p.Sha256)
		}
		wantBin := "kubectl-migrate"
		if osName == "windows" {
			wantBin += ".exe"
		}
		if p.Bin != wantBin {
			t.Errorf("%s: bin = %q, want %q", platform, p.Bin, wantBin)
		}
	}
	if !seen["linux_amd64"] || !seen["linux_arm64"] {
		t.Errorf("platforms %v, want at least linux_amd64 and linux_arm64", seen)
	}
}
