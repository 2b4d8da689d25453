package archive

import (
	"fmt"
	"strconv"
	"strings"
)

// ContainerName is the identity that containerd's CRI plugin records as a
// container's name in config.dump:
// <container>_<pod>_<namespace>_<pod UID>_<attempt> (makeContainerName in
// containerd 2.x). Kubernetes names, namespaces and UIDs never contain "_",
// so the fields split without ambiguity.
//
// config.dump is the record of a container's identity to trust, unlike the
// OCI spec's io.kubernetes.cri.container-name annotation. For a container
// restored from a checkpoint, containerd 2.3.7 writes its own name
// ("containerd") into that annotation, because its restore path
// (CRImportCheckpoint) passes a package constant instead of the
// container's name.
type ContainerName struct {
	// Container is the container's name in its pod.
	Container string
	// Pod, Namespace and PodUID identify the pod (the sandbox's metadata).
	Pod       string
	Namespace string
	PodUID    string
	// Attempt is the kubelet's attempt number of creating the container.
	Attempt uint32
}

// ParseContainerName parses the name that config.dump records. It accepts
// CRI-O's form as well, which has the same fields after a "k8s_" prefix.
func ParseContainerName(name string) (ContainerName, error) {
	fields := strings.Split(name, "_")
	if len(fields) == 6 && fields[0] == "k8s" {
		fields = fields[1:]
	}
	if len(fields) != 5 {
		return ContainerName{}, invalid("config.dump",
			"container name %q is not of the form <container>_<pod>_<namespace>_<pod UID>_<attempt>", name)
	}
	for i, f := range fields[:4] {
		if f == "" {
			return ContainerName{}, invalid("config.dump", "container name %q has an empty field %d", name, i+1)
		}
	}
	attempt, err := strconv.ParseUint(fields[4], 10, 32)
	if err != nil {
		return ContainerName{}, invalid("config.dump", "container name %q has an invalid attempt %q", name,
			fields[4])
	}
	return ContainerName{Container: fields[0], Pod: fields[1], Namespace: fields[2], PodUID: fields[3],
		Attempt: uint32(attempt)}, nil
}

// String returns the name in containerd's form.
func (n ContainerName) String() string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", n.Container, n.Pod, n.Namespace, n.PodUID, n.Attempt)
}
