// Package results holds what one benchmark run measured, in the JSON form
// that lpm-bench writes and its report reads, and the summary statistics
// (median and range) the report shows.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
)

// Results is one benchmark run.
type Results struct {
	// Started and Finished bound the run, by the host's clock.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Command is the command line that produced the run.
	Command string `json:"command"`
	Host    Host   `json:"host"`
	// Sizes are the workload's memory sizes in MiB, in run order.
	Sizes []int `json:"sizes"`
	// Runs is the number of runs per size.
	Runs int `json:"runs"`

	Migrations   []Run          `json:"migrations,omitempty"`
	RuntimeFloor []Run          `json:"runtimeFloor,omitempty"`
	CRIUFloor    []Run          `json:"criuFloor,omitempty"`
	PageServer   []Run          `json:"pageServer,omitempty"`
	ImagePrep    []Run          `json:"imagePrep,omitempty"`
	Transfer     []Run          `json:"transfer,omitempty"`
	Scale        *Scale         `json:"scale,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
	Errors       []string       `json:"errors,omitempty"`
	Extra        map[string]any `json:"extra,omitempty"`
}

// Host describes the machine and the software the run used.
type Host struct {
	Kernel     string  `json:"kernel"`
	CPUs       int     `json:"cpus"`
	MemoryMiB  int64   `json:"memoryMiB"`
	LoadBefore float64 `json:"loadBefore"`
	LoadAfter  float64 `json:"loadAfter"`
	// LoadMax is the highest one-minute load average sampled during the
	// run.
	LoadMax  float64           `json:"loadMax"`
	Versions map[string]string `json:"versions,omitempty"`
}

// Run is one measured run of one kind at one size: each stage's duration
// in seconds, by stage name, and the values that are not durations.
type Run struct {
	SizeMiB int `json:"sizeMiB"`
	// Index counts the runs of one kind and size from 1.
	Index  int                `json:"index"`
	Stages map[string]float64 `json:"stages"`
	Values map[string]float64 `json:"values,omitempty"`
	// Load is the one-minute load average when the run started.
	Load float64 `json:"load"`
	// Detail holds facts a reader may want, such as the timeline of
	// marks the stages came from.
	Detail map[string]any `json:"detail,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Scale is the controller scale benchmark.
type Scale struct {
	Migrations     int     `json:"migrations"`
	Nodes          int     `json:"nodes"`
	MaxMigrations  int     `json:"maxMigrations"`
	MaxOutbound    int     `json:"maxOutbound"`
	Concurrency    int     `json:"concurrency"`
	Succeeded      int     `json:"succeeded"`
	Failed         int     `json:"failed"`
	WallSeconds    float64 `json:"wallSeconds"`
	CPUSeconds     float64 `json:"cpuSeconds"`
	PeakRSSMiB     float64 `json:"peakRSSMiB"`
	MaxRunning     int     `json:"maxRunning"`
	MaxOutboundObs int     `json:"maxOutboundObserved"`
	// Steps maps each controller step to the latencies (seconds) of all
	// migrations.
	Steps map[string][]float64 `json:"steps"`
	// Phases maps each phase to how long the migrations stayed in it
	// (seconds), from the controller's phaseTransitions.
	Phases map[string][]float64 `json:"phases"`
	// RSS samples the controller's resident memory (MiB) over the run.
	RSS   []Sample           `json:"rss"`
	CPU   []Sample           `json:"cpu"`
	Extra map[string]float64 `json:"extra,omitempty"`
	Error string             `json:"error,omitempty"`
}

// Sample is one value at a time since the start of a run.
type Sample struct {
	Seconds float64 `json:"s"`
	Value   float64 `json:"v"`
}

// Write writes r as indented JSON to path.
func (r *Results) Write(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Read reads results written by Write.
func Read(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Results{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("invalid results in %s: %w", path, err)
	}
	return r, nil
}

// Summary is the median and range of several values.
type Summary struct {
	N      int
	Median float64
	Min    float64
	Max    float64
}

// Summarize returns the median and range of values; N is 0 for none.
func Summarize(values []float64) Summary {
	if len(values) == 0 {
		return Summary{}
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	s := Summary{N: len(v), Min: v[0], Max: v[len(v)-1]}
	if len(v)%2 == 1 {
		s.Median = v[len(v)/2]
	} else {
		s.Median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}

// Percentile returns the p-th percentile (0 to 100) of values by the
// nearest-rank method, or 0 for none.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	rank := int(p/100*float64(len(v))+0.999999) - 1
	rank = max(0, min(rank, len(v)-1))
	return v[rank]
}

// StageValues returns the values of stage in the runs of size that have no
// error.
func StageValues(runs []Run, size int, stage string) []float64 {
	var out []float64
	for _, r := range runs {
		if r.SizeMiB != size || r.Error != "" {
			continue
		}
		if v, ok := r.Stages[stage]; ok {
			out = append(out, v)
		}
	}
	return out
}

// ValueValues returns the values of a named value in the runs of size
// that have no error.
func ValueValues(runs []Run, size int, name string) []float64 {
	var out []float64
	for _, r := range runs {
		if r.SizeMiB != size || r.Error != "" {
			continue
		}
		if v, ok := r.Values[name]; ok {
			out = append(out, v)
		}
	}
	return out
}
