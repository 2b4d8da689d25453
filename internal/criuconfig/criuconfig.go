// Package criuconfig reads CRIU configuration files and decides which of
// their options matter to a migration. The agents publish the files'
// options in their NodeAgent, and the controller compares them.
package criuconfig

import (
	"fmt"
	"strconv"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Parse returns the options of a CRIU configuration file, each as
// "name" or "name=value". The file holds one option per line, as on the
// command line with or without the leading dashes; "#" starts a comment.
func Parse(data string) []string {
	var out []string
	for _, line := range strings.Split(data, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimLeft(strings.TrimSpace(line), "-")
		if line == "" {
			continue
		}
		name, value, found := strings.Cut(line, "=")
		if !found {
			name, value, found = strings.Cut(line, " ")
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"'`)
		if found && value != "" {
			out = append(out, name+"="+value)
		} else {
			out = append(out, name)
		}
		if len(out) == 64 {
			break
		}
	}
	return out
}

// Option returns the value of a CRIU option in the files (the last
// one wins, as in CRIU) and whether any file sets it.
func Option(files []lpmv1.CRIUConfigFile, name string) (string, bool) {
	value, set := "", false
	for _, f := range files {
		for _, opt := range f.Options {
			n, v, _ := strings.Cut(opt, "=")
			if n == name {
				value, set = v, true
			}
		}
	}
	return value, set
}

// GhostLimit returns the ghost-file limit in bytes that a node's CRIU
// configuration sets, 0 when it sets none. CRIU reads a size with an
// optional K, M or G suffix.
func GhostLimit(files []lpmv1.CRIUConfigFile) int64 {
	value, set := Option(files, "ghost-limit")
	if !set {
		return 0
	}
	n, err := ParseSize(value)
	if err != nil {
		return 0
	}
	return n
}

// ParseSize reads a CRIU size such as 1048576, 512K, 10M or 1G.
func ParseSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"), strings.HasSuffix(v, "k"):
		mult = 1 << 10
	case strings.HasSuffix(v, "M"), strings.HasSuffix(v, "m"):
		mult = 1 << 20
	case strings.HasSuffix(v, "G"), strings.HasSuffix(v, "g"):
		mult = 1 << 30
	}
	if mult > 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}

// ClosesTCP reports whether the files set tcp-close. CRIU then leaves out
// the state of established TCP connections at dump and closes them at
// restore (CRIU 4.2.1, criu/sk-tcp.c), instead of failing the dump with
// "Connected TCP socket". A migrated pod gets a new address, so its
// connections could not continue anyway.
func ClosesTCP(files []lpmv1.CRIUConfigFile) bool {
	_, set := Option(files, "tcp-close")
	return set
}

// Problem returns why a node's CRIU configuration breaks migrations, empty
// when it does not. images-dir and work-dir move the checkpoint where the
// runtime does not look for it.
func Problem(files []lpmv1.CRIUConfigFile) string {
	for _, f := range files {
		for _, opt := range f.Options {
			name, _, _ := strings.Cut(opt, "=")
			switch name {
			case "images-dir", "work-dir":
				return fmt.Sprintf("%s sets %s, which moves the checkpoint images where the runtime does not "+
					"look for them", f.Path, name)
			}
		}
	}
	return ""
}
