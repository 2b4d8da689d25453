package cli

import (
	"testing"
	"time"
)

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		bytes int64
		want  string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{48 * 1024 * 1024, "48.0 MiB"},
		{1536 * 1024 * 1024, "1.5 GiB"},
		{5 << 50, "5.0 PiB"},
		{5 << 60, "5120.0 PiB"},
	}
	for _, tc := range tests {
		if got := formatBytes(tc.bytes); got != tc.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tc.bytes, got, tc.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0ms"},
		{0, "0ms"},
		{850 * time.Millisecond, "850ms"},
		{1234 * time.Millisecond, "1.2s"},
		{42 * time.Second, "42s"},
		{125 * time.Second, "2m05s"},
		{62*time.Minute + 20*time.Second, "1h02m"},
	}
	for _, tc := range tests {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestFormatLimit(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1s"},
		{10 * time.Minute, "10m"},
		{12 * time.Hour, "12h"},
		{90 * time.Second, "1m30s"},
	}
	for _, tc := range tests {
		if got := formatLimit(tc.d); got != tc.want {
			t.Errorf("formatLimit(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestTruncateLine(t *testing.T) {
	tests := []struct {
		line  string
		width int
		want  string
	}{
		{"  ✓ Pending  1.2s", 0, "  ✓ Pending  1.2s"},
		{"  ✓ Pending  1.2s", 17, "  ✓ Pending  1.2s"},
		{"  ✓ Pending  1.2s", 12, "  ✓ Pending…"},
		{"abc", 1, "a"},
	}
	for _, tc := range tests {
		if got := truncateLine(tc.line, tc.width); got != tc.want {
			t.Errorf("truncateLine(%q, %d) = %q, want %q", tc.line, tc.width, got, tc.want)
		}
	}
}

func TestRenderBar(t *testing.T) {
	tests := []struct {
		done, total int64
		want        string
	}{
		{0, 100, "[                        ]"},
		{50, 100, "[===========>            ]"},
		{100, 100, "[========================]"},
		{150, 100, "[========================]"},
		{5, 0, "[                        ]"},
	}
	for _, tc := range tests {
		if got := renderBar(tc.done, tc.total); got != tc.want {
			t.Errorf("renderBar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}
