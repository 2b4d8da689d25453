package restorecheck

import (
	"bufio"
	"io"
	"regexp"
	"strings"
)

// maxErrorLines bounds the CRIU error lines copied into a message.
const maxErrorLines = 5

// maxLineBytes bounds one copied line.
const maxLineBytes = 300

// logFilePattern finds the log path in runc's error for a failed CRIU run
// ("criu failed: type RESTORE errno 0\nlog file: /run/.../restore.log").
var logFilePattern = regexp.MustCompile(`log file: (/[^\s"\\]+)`)

// LogFileFromError returns the CRIU log file named in a runtime's error
// message, empty when it names none.
func LogFileFromError(msg string) string {
	m := logFilePattern.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

// ErrorLines returns the first error lines of a CRIU log: those CRIU
// writes with "Error (" and the pie's "Error" lines, skipping the rlimit
// warning that every run without CAP_SYS_RESOURCE logs as an error.
func ErrorLines(log io.Reader) []string {
	var out []string
	scanner := bufio.NewScanner(log)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if !strings.Contains(line, "Error (") && !strings.Contains(line, ": Error") {
			continue
		}
		if strings.Contains(line, "Can't setup RLIMIT_NOFILE for self") {
			continue
		}
		if len(line) > maxLineBytes {
			line = line[:maxLineBytes]
		}
		out = append(out, line)
		if len(out) == maxErrorLines {
			break
		}
	}
	return out
}
