package v1

// Annotations that the controller sets on a restored pod. They record the
// migration that made the pod and where it came from, and they tell the
// name derivation that lpm restored this pod.
const (
	// AnnotationMigration is the namespace/name of the PodMigration that
	// created the pod.
	AnnotationMigration = "lpm.dev/migration"
	// AnnotationMigrationUID is the UID of that PodMigration.
	AnnotationMigrationUID = "lpm.dev/migration-uid"
	// AnnotationSourcePod is the name of the pod the migration moved.
	AnnotationSourcePod = "lpm.dev/source-pod"
	// AnnotationSourceNode is the node the moved pod ran on.
	AnnotationSourceNode = "lpm.dev/source-node"
)

// FinalizerRollback is the controller's finalizer on a PodMigration. It
// keeps a deleted migration until its rollback finished.
const FinalizerRollback = "lpm.dev/rollback"
