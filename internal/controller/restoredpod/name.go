package restoredpod

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const (
	// Suffix marks a pod restored by lpm.
	Suffix = "-restored"

	// MaxNameLength keeps the restored pod's name a valid DNS label, so the
	// kubelet can use it as the hostname without truncating it.
	MaxNameLength = validation.DNS1123LabelMaxLength

	// uidSuffixLength is how many characters of the migration's UID the
	// fallback name carries.
	uidSuffixLength = 5
)

// restoredName matches the name of a pod that lpm restored: the stem, the
// suffix and, for a fallback name, part of the migration's UID.
var restoredName = regexp.MustCompile(`^(.+)-restored(-[a-z0-9]{5})?$`)

// RestoredByLPM reports whether lpm created the pod as a restored pod.
func RestoredByLPM(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[lpmv1.AnnotationMigrationUID]
	return ok
}

// Stem returns the name a chain of migrations keeps: the source's name, less
// the suffix when lpm restored the source.
func Stem(source *corev1.Pod) string {
	if !RestoredByLPM(source) {
		return source.Name
	}
	if m := restoredName.FindStringSubmatch(source.Name); m != nil {
		return m[1]
	}
	return source.Name
}

// Name derives the restored pod's preferred name. A pod that lpm did not
// restore gets the suffix. A pod that lpm restored under a suffixed name
// gets its stem back, so a pod moved A -> B -> A is named web, web-restored,
// web, and no name ever carries two suffixes.
func Name(source *corev1.Pod) string {
	stem := Stem(source)
	if stem != source.Name {
		return stem
	}
	return withSuffix(stem, Suffix)
}

// FallbackName derives the name used when another pod already has the
// preferred name, for example the original of a clone: the stem, the suffix
// and the first characters of the migration's UID.
func FallbackName(source *corev1.Pod, migrationUID types.UID) string {
	uid := strings.ReplaceAll(strings.ToLower(string(migrationUID)), "-", "")
	if len(uid) > uidSuffixLength {
		uid = uid[:uidSuffixLength]
	}
	return withSuffix(Stem(source), Suffix+"-"+uid)
}

// ChooseName returns the preferred name unless taken reports that a pod
// that is not this migration's restored pod has it, then the fallback name.
// It returns false when both names are taken.
func ChooseName(source *corev1.Pod, migrationUID types.UID, taken func(name string) bool) (string, bool) {
	for _, name := range []string{Name(source), FallbackName(source, migrationUID)} {
		if name != source.Name && !taken(name) {
			return name, true
		}
	}
	return "", false
}

// Hostname returns the hostname the kubelet gives a pod named name with no
// spec.hostname: the name cut to 63 characters, without a trailing '-' or
// '.'.
func Hostname(name string) string {
	if len(name) > validation.DNS1123LabelMaxLength {
		name = strings.TrimRight(name[:validation.DNS1123LabelMaxLength], "-.")
	}
	return name
}

// withSuffix appends suffix to stem, cutting the stem so that the result
// fits MaxNameLength and does not put a '-' or '.' before the suffix.
func withSuffix(stem, suffix string) string {
	if room := MaxNameLength - len(suffix); len(stem) > room {
		stem = strings.TrimRight(stem[:room], "-.")
	}
	return stem + suffix
}
