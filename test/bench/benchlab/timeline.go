package benchlab

import (
	"fmt"
	"strings"
	"time"
)

// Point is one expected moment of a timeline: either a fixed time the
// benchmark measured itself, or the first mark after the previous point
// that Match accepts.
type Point struct {
	// Stage names the interval that ends at this point.
	Stage string
	// At is a time measured outside the tracer; zero means Match decides.
	At    time.Time
	Match func(Mark) bool
}

// On returns a matcher for marks of kind on node whose subject is
// subject, or any subject when subject is empty.
func On(node, kind, subject string) func(Mark) bool {
	return func(m Mark) bool {
		return m.Node == node && m.Kind == kind && (subject == "" || m.Subject == subject)
	}
}

// OnPrefix returns a matcher for marks of kind on node whose subject
// starts with prefix.
func OnPrefix(node, kind, prefix string) func(Mark) bool {
	return func(m Mark) bool {
		return m.Node == node && m.Kind == kind && strings.HasPrefix(m.Subject, prefix)
	}
}

// OnContent returns a matcher for /content/create events on node of at
// least minSize bytes: a layer or checkpoint blob, not a manifest.
func OnContent(node string, minSize int64) func(Mark) bool {
	return func(m Mark) bool {
		return m.Node == node && m.Kind == "/content/create" && m.Size >= minSize
	}
}

// Timeline is the result of placing points on marks.
type Timeline struct {
	// Times of the points found, by stage name of the point.
	Times map[string]time.Time
	// Stages maps each stage to its duration in seconds. A stage whose end
	// point was not found merges into the next stage, whose name then
	// joins both with " + ".
	Stages map[string]float64
	// Order lists the stage names in time order.
	Order []string
	// Missing lists the stages whose end point was not found.
	Missing []string
}

// Place finds each point in order: a fixed point at its time, a matched
// point at the first matching mark not earlier than the previous point
// found. The first point must be fixed: it starts the timeline.
func Place(marks []Mark, points []Point) (Timeline, error) {
	tl := Timeline{Times: map[string]time.Time{}, Stages: map[string]float64{}}
	if len(points) == 0 || points[0].At.IsZero() {
		return tl, fmt.Errorf("a timeline must start at a fixed time")
	}
	prev := points[0].At
	tl.Times[points[0].Stage] = prev
	pending := ""
	for _, p := range points[1:] {
		at := p.At
		if at.IsZero() && p.Match != nil {
			for _, m := range marks {
				if !m.Time.Before(prev) && p.Match(m) {
					at = m.Time
					break
				}
			}
		}
		name := p.Stage
		if pending != "" {
			name = pending + " + " + p.Stage
		}
		if at.IsZero() || at.Before(prev) {
			tl.Missing = append(tl.Missing, p.Stage)
			pending = name
			continue
		}
		pending = ""
		tl.Times[p.Stage] = at
		tl.Stages[name] = at.Sub(prev).Seconds()
		tl.Order = append(tl.Order, name)
		prev = at
	}
	return tl, nil
}

// Between returns the seconds from the point named from to the point named
// to, and whether both were found.
func (tl Timeline) Between(from, to string) (float64, bool) {
	a, ok1 := tl.Times[from]
	b, ok2 := tl.Times[to]
	if !ok1 || !ok2 {
		return 0, false
	}
	return b.Sub(a).Seconds(), true
}
