package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

const source = `
# a comment
title A <small> & "quoted" flow
participant a Alpha / first
participant b Beta
phase One
a -> b: ask
b --> a: answer
note a: think
b -> b: work alone
`

func TestParse(t *testing.T) {
	d, err := parse(strings.NewReader(source))
	if err != nil {
		t.Fatal(err)
	}
	if d.title != `A <small> & "quoted" flow` {
		t.Errorf("title = %q", d.title)
	}
	if len(d.participants) != 2 || len(d.participants[0].lines) != 2 || d.participants[0].lines[1] != "first" {
		t.Errorf("participants = %+v, want Alpha / first and Beta", d.participants)
	}
	want := []step{
		{kind: stepPhase, text: "One", line: 6},
		{kind: stepMessage, from: 0, to: 1, text: "ask", line: 7},
		{kind: stepMessage, from: 1, to: 0, dashed: true, text: "answer", line: 8},
		{kind: stepNote, from: 0, to: 0, text: "think", line: 9},
		{kind: stepMessage, from: 1, to: 1, text: "work alone", line: 10},
	}
	if len(d.steps) != len(want) {
		t.Fatalf("got %d steps, want %d: %+v", len(d.steps), len(want), d.steps)
	}
	for i := range want {
		if d.steps[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, d.steps[i], want[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	testCases := []struct {
		name    string
		source  string
		wantErr string
	}{
		{"unknown participant", "participant a A\nparticipant b B\na -> c: x\n", `line 3: unknown participant "c"`},
		{"duplicate participant", "participant a A\nparticipant a B\n", `line 2: participant "a" is declared twice`},
		{"no label", "participant a\n", "line 1: participant needs an ID and a label"},
		{"unknown line", "participant a A\nparticipant b B\nhello\n", `line 3: invalid line "hello"`},
		{"note without text", "participant a A\nparticipant b B\nnote a\n", "line 3: note needs"},
		{"empty phase", "phase\n", "line 1: phase needs a name"},
		{"one participant", "participant a A\n", "at least two participants"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(tc.source))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parse() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRenderIsValidXML(t *testing.T) {
	d, err := parse(strings.NewReader(source))
	if err != nil {
		t.Fatal(err)
	}
	svg := render(d)

	dec := xml.NewDecoder(bytes.NewReader(svg))
	var texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			texts = append(texts, string(cd))
		}
	}
	for _, want := range []string{`A <small> & "quoted" flow`, "Alpha", "first", "One", "ask", "answer", "think",
		"work alone"} {
		found := false
		for _, text := range texts {
			found = found || text == want
		}
		if !found {
			t.Errorf("the SVG has no text %q among %q", want, texts)
		}
	}
	if !bytes.Equal(svg, render(d)) {
		t.Errorf("two renderings of the same diagram differ")
	}
}

// TestFlowIsCurrent fails when docs/architecture/flow.svg is not what make
// generate renders from flow.txt.
func TestFlowIsCurrent(t *testing.T) {
	src, err := os.Open("../../docs/architecture/flow.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	d, err := parse(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/architecture/flow.svg")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, render(d)) {
		t.Errorf("docs/architecture/flow.svg is stale: run make generate")
	}
}
