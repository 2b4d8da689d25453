package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// capSysResource is the bit of CAP_SYS_RESOURCE in a capability set.
const capSysResource = 24

// procStatus is what the agent reads from /proc/<pid>/status.
type procStatus struct {
	// EffectiveUID is the second field of the Uid line.
	EffectiveUID int
	// CapEff is the effective capability set.
	CapEff uint64
}

// readProcStatus parses /proc/<pid>/status under procRoot.
func readProcStatus(procRoot string, pid uint64) (*procStatus, error) {
	path := filepath.Join(procRoot, strconv.FormatUint(pid, 10), "status")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	return parseProcStatus(string(data))
}

func parseProcStatus(data string) (*procStatus, error) {
	st := &procStatus{EffectiveUID: -1}
	for _, line := range strings.Split(data, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		switch key {
		case "Uid":
			if len(fields) >= 2 {
				uid, err := strconv.Atoi(fields[1])
				if err != nil {
					return nil, fmt.Errorf("invalid Uid line %q", line)
				}
				st.EffectiveUID = uid
			}
		case "CapEff":
			if len(fields) == 1 {
				capEff, err := strconv.ParseUint(fields[0], 16, 64)
				if err != nil {
					return nil, fmt.Errorf("invalid CapEff line %q", line)
				}
				st.CapEff = capEff
			}
		}
	}
	if st.EffectiveUID < 0 {
		return nil, fmt.Errorf("no Uid line")
	}
	return st, nil
}
