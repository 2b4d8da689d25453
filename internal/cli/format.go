package cli

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// formatBytes formats a byte count with binary prefixes: "512 B",
// "48.2 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value := float64(n) / unit
	prefixes := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for value >= unit && i < len(prefixes)-1 {
		value /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", value, prefixes[i])
}

// formatRate formats a transfer rate in bytes per second.
func formatRate(bytesPerSecond float64) string {
	return formatBytes(int64(bytesPerSecond)) + "/s"
}

// formatDuration formats a duration for the progress display and tables:
// "850ms", "1.2s", "2m05s", "1h02m". It keeps two significant units, which
// is the precision a person reads from a migration's phases.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// formatAge formats how long ago t was, as kubectl's AGE column does.
func formatAge(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// formatTimestamp formats a timestamp as kubectl describe does.
func formatTimestamp(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return t.Format(time.RFC1123Z)
}

// formatMicroTimestamp formats a timestamp with microseconds as
// formatTimestamp does, with milliseconds added.
func formatMicroTimestamp(t *metav1.MicroTime) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return t.Format("Mon, 02 Jan 2006 15:04:05.000 -0700")
}

// orNone returns s, or "<none>" when s is empty, as kubectl's tables do.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// plural returns "1 container" or "3 containers".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// truncateLine shortens line to width columns, counting runes, so that a
// redrawn line never wraps. A width of 0 or less leaves line as it is.
func truncateLine(line string, width int) string {
	if width <= 0 {
		return line
	}
	runes := []rune(line)
	if len(runes) <= width {
		return line
	}
	if width == 1 {
		return string(runes[:1])
	}
	return strings.TrimRight(string(runes[:width-1]), " ") + "…"
}
