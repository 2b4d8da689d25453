package cli

import (
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Bounds of the durations a PodMigration accepts. They repeat the CRD's
// validation, so that a bad value fails before anything is created.
const (
	minOverallTimeout = time.Second
	maxOverallTimeout = 12 * time.Hour
	maxSettle         = 10 * time.Minute
	maxRepositoryLen  = 255
)

// repositoryPattern is the CRD's pattern for spec.transfer.registry.repository.
var repositoryPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.:_/-]*$`)

// Output formats of -o.
const (
	outputNone = ""
	outputJSON = "json"
	outputYAML = "yaml"
)

// migrationRequest contains the arguments and flags of "kubectl migrate
// pod" that shape the PodMigration.
type migrationRequest struct {
	podName    string
	targetNode string
	keep       bool
	dryRun     bool
	// timeout is the overall timeout, or 0 for the controller's default.
	timeout    time.Duration
	timeoutSet bool
	transfer   string
	registry   string
	pullSecret string
	// settle is the settle window when settleSet is true.
	settle    time.Duration
	settleSet bool
}

// podNameFromArgs returns the single pod name in args, or a usage error.
func podNameFromArgs(args []string, commandPath string) (string, error) {
	switch len(args) {
	case 0:
		return "", usageErrorf("missing pod name: run '%s NAME'", commandPath)
	case 1:
		return args[0], nil
	default:
		return "", usageErrorf("expected one pod name, got %d arguments: %s",
			len(args), strings.Join(args, " "))
	}
}

// validateOutput returns a usage error unless format is empty, json or yaml.
func validateOutput(format string) error {
	switch format {
	case outputNone, outputJSON, outputYAML:
		return nil
	default:
		return usageErrorf("invalid --output %q: must be json or yaml", format)
	}
}

// validateObjectName returns a usage error unless name is a valid name for
// a Kubernetes object (a DNS subdomain). label names the value in the
// message, for example "pod name" or "--to".
func validateObjectName(label, name string) error {
	if name == "" {
		return usageErrorf("missing %s", label)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return usageErrorf("invalid %s %q: %s", label, name, strings.Join(errs, ", "))
	}
	return nil
}

// hasRegistryHost reports whether the first component of an image
// repository names a registry host (it holds a dot or a port, or is
// localhost), rather than leaving the registry to a default such as
// Docker Hub.
func hasRegistryHost(repository string) bool {
	host, _, ok := strings.Cut(repository, "/")
	return ok && (strings.ContainsAny(host, ".:") || host == "localhost")
}

// validateRepository returns a usage error unless repository is an image
// repository without a tag or digest.
func validateRepository(repository string) error {
	lastSegment := repository[strings.LastIndex(repository, "/")+1:]
	if len(repository) > maxRepositoryLen || !repositoryPattern.MatchString(repository) ||
		strings.Contains(lastSegment, ":") {
		return usageErrorf("invalid --registry %q: must be an image repository without a tag or digest, "+
			"at most %d characters, for example registry.example.com:5000/team/checkpoints",
			repository, maxRepositoryLen)
	}
	if !hasRegistryHost(repository) {
		return usageErrorf("invalid --registry %q: must start with the registry's host, for example "+
			"registry.example.com/team/checkpoints; lpm does not default to a public registry", repository)
	}
	return nil
}

// parseTransferMode maps the --transfer value to a TransferMode. An empty
// value means the default, Direct; a registry repository alone is an error.
func parseTransferMode(value, registry string) (lpmv1.TransferMode, error) {
	switch strings.ToLower(value) {
	case "":
		if registry != "" {
			return "", usageErrorf("--registry needs --transfer registry: the checkpoint images hold the " +
				"pod's memory, so lpm pushes them to a registry only when asked to")
		}
		return "", nil
	case "direct":
		return lpmv1.TransferModeDirect, nil
	case "registry":
		return lpmv1.TransferModeRegistry, nil
	default:
		return "", usageErrorf("invalid --transfer %q: must be direct or registry", value)
	}
}

// buildSpec validates the request and returns the PodMigration spec that it
// describes. Every error is a usage error that names the flag and the fix.
func (r *migrationRequest) buildSpec() (lpmv1.PodMigrationSpec, error) {
	spec := lpmv1.PodMigrationSpec{PodName: r.podName, DryRun: r.dryRun}

	if err := validateObjectName("pod name", r.podName); err != nil {
		return spec, err
	}
	if r.targetNode != "" {
		if err := validateObjectName("--to", r.targetNode); err != nil {
			return spec, err
		}
		spec.TargetNode = r.targetNode
	}
	if r.keep {
		spec.SourcePolicy = lpmv1.SourcePolicyKeep
	}

	if r.timeoutSet {
		if r.timeout < minOverallTimeout || r.timeout > maxOverallTimeout {
			return spec, usageErrorf("invalid --timeout %s: must be between %s and %s",
				r.timeout, formatLimit(minOverallTimeout), formatLimit(maxOverallTimeout))
		}
		spec.Timeouts = &lpmv1.Timeouts{Overall: &metav1.Duration{Duration: r.timeout}}
	}
	if r.settleSet {
		if r.settle < 0 || r.settle > maxSettle {
			return spec, usageErrorf("invalid --settle %s: must be between 0s and %s", r.settle,
				formatLimit(maxSettle))
		}
		spec.Settle = &metav1.Duration{Duration: r.settle}
	}

	transfer, err := r.buildTransfer()
	if err != nil {
		return spec, err
	}
	spec.Transfer = transfer
	return spec, nil
}

// buildTransfer validates --transfer, --registry and --pull-secret together.
func (r *migrationRequest) buildTransfer() (*lpmv1.Transfer, error) {
	mode, err := parseTransferMode(r.transfer, r.registry)
	if err != nil {
		return nil, err
	}

	switch mode {
	case "":
		if r.pullSecret != "" {
			return nil, usageErrorf("--pull-secret needs --transfer registry and --registry REPOSITORY")
		}
		return nil, nil
	case lpmv1.TransferModeDirect:
		if r.registry != "" {
			return nil, usageErrorf("--registry is only valid with --transfer registry, not direct")
		}
		if r.pullSecret != "" {
			return nil, usageErrorf("--pull-secret is only valid with --transfer registry, not direct")
		}
		return &lpmv1.Transfer{Mode: lpmv1.TransferModeDirect}, nil
	}

	if r.registry == "" {
		return nil, usageErrorf("--transfer registry needs --registry REPOSITORY, " +
			"for example --registry registry.example.com/team/checkpoints")
	}
	if err := validateRepository(r.registry); err != nil {
		return nil, err
	}
	registry := &lpmv1.RegistryTransfer{Repository: r.registry}
	if r.pullSecret != "" {
		if err := validateObjectName("--pull-secret", r.pullSecret); err != nil {
			return nil, err
		}
		registry.PullSecretName = r.pullSecret
	}
	return &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry, Registry: registry}, nil
}

// formatLimit formats a round duration without its zero units: "12h", not
// "12h0m0s".
func formatLimit(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
