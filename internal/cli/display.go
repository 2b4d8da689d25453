package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/utils/clock"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// controllerHintAfter is how long a PodMigration may stay without any
// status before the display suggests that no controller runs.
const controllerHintAfter = 15 * time.Second

const controllerHint = "No controller has processed this PodMigration yet. " +
	"Check that the lpm controller runs."

const barWidth = 24

var spinnerFrames = []string{"|", "/", "-", "\\"}

// progressDisplay shows a followed migration as it changes.
type progressDisplay interface {
	// update shows a new version of the PodMigration.
	update(pm *lpmv1.PodMigration)
	// tick refreshes what depends on the time alone.
	tick()
	// finish writes the final state. After it, the display writes nothing.
	finish()
}

// newProgressDisplay returns the live display for a terminal, or the
// display that writes one plain line per phase transition.
func newProgressDisplay(out io.Writer, deps Deps, tracker *progressTracker) progressDisplay {
	if deps.IsTerminal(out) {
		return &liveDisplay{
			out:     out,
			clock:   deps.Clock,
			tracker: tracker,
			width:   func() int { return deps.TerminalWidth(out) },
		}
	}
	return &plainDisplay{out: out, clock: deps.Clock, tracker: tracker}
}

// phaseMark returns the mark in front of a phase line of the live display.
func phaseMark(ended bool, spinner int) string {
	if ended {
		return "✓"
	}
	return spinnerFrames[spinner%len(spinnerFrames)]
}

func formatPhaseLine(mark string, phase lpmv1.MigrationPhase, elapsed string, detail string) string {
	return strings.TrimRight(fmt.Sprintf("  %s %-19s %7s  %s", mark, phase, elapsed, detail), " ")
}

// liveFrame returns the lines of the live display at local time now. The
// final lines no longer change, and the live lines are redrawn on the next
// frame.
func (t *progressTracker) liveFrame(now time.Time, spinner int) (final, live []string) {
	for i, e := range t.entries {
		if isTerminalPhase(e.phase) {
			break
		}
		ended := i+1 < len(t.entries)
		line := formatPhaseLine(phaseMark(ended, spinner), e.phase, t.phaseDurationText(i, now),
			t.phaseDetail(e.phase, !ended))
		if ended {
			final = append(final, line)
			continue
		}
		live = append(live, line)
		if bar := t.progressBar(e.phase, now); bar != "" {
			live = append(live, "    "+bar)
		}
	}

	if t.latest != nil && t.latest.Status.Phase == "" && now.Sub(t.started) >= controllerHintAfter {
		live = append(live, "  "+controllerHint)
	}
	return final, live
}

// progressBar returns the bar line for the current phase p, or "".
func (t *progressTracker) progressBar(p lpmv1.MigrationPhase, now time.Time) string {
	switch p {
	case lpmv1.PhaseCheckpointing:
		containers, bytes := checkpointFigures(t.latest)
		if t.podContainers == 0 {
			return ""
		}
		return fmt.Sprintf("%s  %d/%d containers  %s checkpointed", renderBar(int64(containers),
			int64(t.podContainers)), containers, t.podContainers, formatBytes(bytes))
	case lpmv1.PhasePreparingImages:
		done, total := transferBytes(t.latest)
		rate := ""
		if r := t.transferRate(now); r > 0 {
			rate = "  " + formatRate(r)
		}
		if total <= 0 {
			if done == 0 {
				return ""
			}
			return fmt.Sprintf("%s received%s", formatBytes(done), rate)
		}
		percent := min(100*done/total, 100)
		return fmt.Sprintf("%s  %s / %s  %d%%%s", renderBar(done, total), formatBytes(done),
			formatBytes(total), percent, rate)
	}
	return ""
}

// renderBar draws a progress bar of barWidth cells for done out of total.
func renderBar(done, total int64) string {
	filled := 0
	if total > 0 {
		filled = int(min(done, total) * barWidth / total)
	}
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		if filled > 0 {
			bar = bar[:filled-1] + ">"
		}
		bar += strings.Repeat(" ", barWidth-filled)
	}
	return "[" + bar + "]"
}

// liveDisplay redraws the progress in place on a terminal.
type liveDisplay struct {
	out     io.Writer
	clock   clock.PassiveClock
	tracker *progressTracker
	width   func() int

	spinner      int
	finalWritten int
	liveLines    int
}

func (d *liveDisplay) update(pm *lpmv1.PodMigration) {
	d.tracker.observe(pm, d.clock.Now())
	d.draw()
}

func (d *liveDisplay) tick() {
	d.spinner++
	d.draw()
}

func (d *liveDisplay) finish() {
	d.draw()
	// Keep the last live lines on the screen and write below them.
	d.liveLines = 0
}

// draw erases the live lines of the previous frame, writes the final lines
// that are new since then and the current live lines.
func (d *liveDisplay) draw() {
	final, live := d.tracker.liveFrame(d.clock.Now(), d.spinner)
	width := d.width()

	var b strings.Builder
	if d.liveLines > 0 {
		// Move the cursor up to the first live line and clear to the end
		// of the screen.
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", d.liveLines)
	}
	for _, line := range final[min(d.finalWritten, len(final)):] {
		b.WriteString(truncateLine(line, width))
		b.WriteByte('\n')
	}
	for _, line := range live {
		b.WriteString(truncateLine(line, width))
		b.WriteByte('\n')
	}
	d.finalWritten = len(final)
	d.liveLines = len(live)
	_, _ = io.WriteString(d.out, b.String())
}

// plainDisplay writes one line per phase transition, for logs and pipes.
type plainDisplay struct {
	out     io.Writer
	clock   clock.PassiveClock
	tracker *progressTracker

	printed     int
	hintPrinted bool
}

func (d *plainDisplay) update(pm *lpmv1.PodMigration) {
	now := d.clock.Now()
	d.tracker.observe(pm, now)
	for _, line := range d.tracker.transitionLines(d.printed, now) {
		_, _ = fmt.Fprintln(d.out, line)
	}
	d.printed = len(d.tracker.entries)
}

func (d *plainDisplay) tick() {
	t := d.tracker
	if d.hintPrinted || t.latest == nil || t.latest.Status.Phase != "" {
		return
	}
	if d.clock.Since(t.started) >= controllerHintAfter {
		_, _ = fmt.Fprintln(d.out, controllerHint)
		d.hintPrinted = true
	}
}

func (d *plainDisplay) finish() {}

// transitionLines returns one line for each phase entry from index from on:
// "-> Pending" for the first phase, and "Pending -> Checkpointing after
// 1.2s (target node-b)" for the next ones, with the duration and the
// detail of the phase that ended.
func (t *progressTracker) transitionLines(from int, now time.Time) []string {
	var lines []string
	for i := from; i < len(t.entries); i++ {
		e := t.entries[i]
		if i == 0 {
			lines = append(lines, "-> "+string(e.phase))
			continue
		}

		prev := t.entries[i-1]
		line := fmt.Sprintf("%s -> %s", prev.phase, e.phase)
		if elapsed := t.phaseDurationText(i-1, now); elapsed != "?" {
			line += " after " + elapsed
		}
		if detail := t.phaseDetail(prev.phase, false); detail != "" {
			line += " (" + detail + ")"
		}
		lines = append(lines, line)
	}
	return lines
}
