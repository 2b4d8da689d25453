package ckptimage

import (
	"strings"
)

// maxTagLength is the longest tag the OCI distribution spec allows.
const maxTagLength = 128

// uidPrefixLength is how many characters of the PodMigration's UID an
// image name carries: enough to tell two migrations of one pod apart.
const uidPrefixLength = 8

// DirectReference returns the name under which the target node's runtime
// holds a checkpoint image that reached it by direct transfer:
// localhost/lpm/<namespace>/<pod>-<container>:<migration UID prefix>.
func DirectReference(namespace, pod, container, migrationUID string) string {
	return "localhost/lpm/" + namespace + "/" + pod + "-" + container + ":" + uidPrefix(migrationUID)
}

// RegistryReference returns the name of a checkpoint image pushed to a
// registry: <repository>:<pod>-<container>-<migration UID prefix>. The
// tag is shortened from the front of the pod name to fit 128 characters.
func RegistryReference(repository, pod, container, migrationUID string) string {
	suffix := "-" + container + "-" + uidPrefix(migrationUID)
	if room := maxTagLength - len(suffix); len(pod) > room {
		pod = pod[len(pod)-room:]
	}
	tag := strings.TrimLeft(pod+suffix, ".-")
	return repository + ":" + tag
}

func uidPrefix(uid string) string {
	uid = strings.ReplaceAll(uid, "-", "")
	if len(uid) > uidPrefixLength {
		uid = uid[:uidPrefixLength]
	}
	return uid
}
