package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// diagram is a sequence diagram: participants as columns, steps top down,
// grouped into phases.
type diagram struct {
	title        string
	participants []participant
	steps        []step
}

type participant struct {
	id string
	// lines are the header's lines; the source separates them with " / ".
	lines []string
}

// step is one row of the diagram: a message between two participants, a
// note on one, or the start of a phase.
type step struct {
	kind     stepKind
	from, to int
	dashed   bool
	text     string
	// line is the source line, for error messages.
	line int
}

type stepKind int

const (
	stepMessage stepKind = iota
	stepNote
	stepPhase
)

// parse reads a diagram source. Each line is one of:
//
//	# a comment
//	title TEXT
//	participant ID LABEL         (" / " in LABEL breaks the line)
//	phase NAME
//	FROM -> TO: TEXT             a request or a write
//	FROM --> TO: TEXT            a watch event or a response, drawn dashed
//	note ID: TEXT
func parse(r io.Reader) (*diagram, error) {
	d := &diagram{}
	index := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keyword, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		var err error
		switch keyword {
		case "title":
			d.title = rest
		case "participant":
			err = d.addParticipant(index, rest)
		case "phase":
			if rest == "" {
				err = fmt.Errorf("phase needs a name")
			}
			d.steps = append(d.steps, step{kind: stepPhase, text: rest, line: n})
		case "note":
			err = d.addNote(index, rest, n)
		default:
			err = d.addMessage(index, line, n)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.participants) < 2 {
		return nil, fmt.Errorf("the diagram needs at least two participants")
	}
	return d, nil
}

func (d *diagram) addParticipant(index map[string]int, rest string) error {
	id, label, ok := strings.Cut(rest, " ")
	if !ok || strings.TrimSpace(label) == "" {
		return fmt.Errorf("participant needs an ID and a label")
	}
	if _, dup := index[id]; dup {
		return fmt.Errorf("participant %q is declared twice", id)
	}
	index[id] = len(d.participants)
	var lines []string
	for _, l := range strings.Split(label, " / ") {
		lines = append(lines, strings.TrimSpace(l))
	}
	d.participants = append(d.participants, participant{id: id, lines: lines})
	return nil
}

func (d *diagram) addNote(index map[string]int, rest string, n int) error {
	id, text, ok := strings.Cut(rest, ":")
	if !ok {
		return fmt.Errorf("note needs \"ID: TEXT\"")
	}
	i, found := index[strings.TrimSpace(id)]
	if !found {
		return fmt.Errorf("unknown participant %q", strings.TrimSpace(id))
	}
	d.steps = append(d.steps, step{kind: stepNote, from: i, to: i, text: strings.TrimSpace(text), line: n})
	return nil
}

func (d *diagram) addMessage(index map[string]int, line string, n int) error {
	arrow, text, ok := strings.Cut(line, ":")
	if !ok {
		return fmt.Errorf("invalid line %q: want a keyword or \"FROM -> TO: TEXT\"", line)
	}
	dashed := strings.Contains(arrow, "-->")
	sep := "->"
	if dashed {
		sep = "-->"
	}
	from, to, ok := strings.Cut(arrow, sep)
	if !ok {
		return fmt.Errorf("invalid line %q: want a keyword or \"FROM -> TO: TEXT\"", line)
	}
	f, found := index[strings.TrimSpace(from)]
	if !found {
		return fmt.Errorf("unknown participant %q", strings.TrimSpace(from))
	}
	t, found := index[strings.TrimSpace(to)]
	if !found {
		return fmt.Errorf("unknown participant %q", strings.TrimSpace(to))
	}
	d.steps = append(d.steps, step{kind: stepMessage, from: f, to: t, dashed: dashed,
		text: strings.TrimSpace(text), line: n})
	return nil
}
