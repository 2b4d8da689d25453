package procscan

import (
	"strconv"
	"strings"
)

// DefaultGhostLimit is CRIU's default limit on the size of a deleted file
// that it copies into the checkpoint (DEFAULT_GHOST_LIMIT, 1 MiB, in every
// release up to 4.2). Larger ones fail the dump with "Can't dump ghost
// file ... increase limit".
const DefaultGhostLimit = 1 << 20

// MaxPipesWithData is how many pipes holding unread data CRIU stores in one
// dump (NR_PIPES_WITH_DATA). CRIU 4.2.1 dumps a process with 1,000 such
// pipes and fails on 1,100 with "OOM storing pipe".
const MaxPipesWithData = 1024

// First CRIU versions, in CRIU's numbering, that handle an object.
const (
	// criuPidfdVersion dumps and restores a pidfd of a process inside the
	// dumped tree; CRIU 4.2.1 does.
	// NOTE: 4.2.1 is the oldest release this was tested with; earlier
	// releases that also do it are rejected all the same.
	criuPidfdVersion = 40200
	// criuOverlayWatchVersion dumps an inotify or fanotify watch on an
	// overlay file system. CRIU 4.2.1 fails with "Can't dump that handle";
	// the fix was merged after 4.2.
	// NOTE: the first release with the fix is assumed to be 4.3.
	criuOverlayWatchVersion = 40300
)

// Policy describes the objects the node's CRIU can handle.
type Policy struct {
	// CRIUVersion is CRIU's version in CRIU's numbering: 40201 for 4.2.1,
	// 0 when unknown, which applies every rule.
	CRIUVersion int
	// GhostLimit is the largest deleted file CRIU dumps, in bytes;
	// DefaultGhostLimit when 0.
	GhostLimit int64
	// TCPClose is true when the node's CRIU configuration sets tcp-close,
	// so established TCP connections do not stop a dump.
	TCPClose bool
}

// NewPolicy returns the policy of a CRIU version ("4.2.1") with the
// ghost-file limit of the node's CRIU configuration (0 for the default).
func NewPolicy(criuVersion string, ghostLimit int64) Policy {
	return Policy{CRIUVersion: VersionNumber(criuVersion), GhostLimit: ghostLimit}
}

// VersionNumber turns 4.2.1 into 40201, CRIU's own numbering, and returns 0
// for a version it cannot read.
func VersionNumber(v string) int {
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(v), "v"), ".", 3)
	n := 0
	for i, mult := range []int{10000, 100, 1} {
		if i >= len(parts) {
			break
		}
		x, err := strconv.Atoi(parts[i])
		if err != nil || x < 0 || x > 99 {
			return 0
		}
		n += x * mult
	}
	return n
}

func (p Policy) ghostLimit() int64 {
	if p.GhostLimit > 0 {
		return p.GhostLimit
	}
	return DefaultGhostLimit
}

func (p Policy) dumpsPidfds() bool { return p.CRIUVersion >= criuPidfdVersion }

func (p Policy) dumpsOverlayWatches() bool { return p.CRIUVersion >= criuOverlayWatchVersion }
