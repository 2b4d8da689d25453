package main

import (
	"bytes"
	"fmt"
	"strings"
)

// Layout in pixels. Text is monospace at fontSize, so its width is
// estimated from its length.
const (
	fontSize     = 12
	charWidth    = 7.3 // width of one character of a 12 px monospace font, an estimate
	phaseMargin  = 150 // left column that holds the phase names
	columnWidth  = 200
	headerLine   = 16
	titleHeight  = 40
	messageRow   = 32
	selfRow      = 44
	noteRow      = 34
	phaseGap     = 14
	bottomMargin = 24
	// selfLabelOffset is the distance from a lifeline to the label of a
	// step its participant takes on its own.
	selfLabelOffset = 34
)

// phaseFills alternate between phases, so neighbouring bands differ.
var phaseFills = []string{"#eef3fb", "#f7f7f2"}

// render returns the diagram as an SVG document. The same diagram always
// gives the same bytes.
func render(d *diagram) []byte {
	headerHeight := 0
	for _, p := range d.participants {
		headerHeight = max(headerHeight, len(p.lines)*headerLine+14)
	}
	width := phaseMargin + len(d.participants)*columnWidth
	for _, s := range d.steps {
		if s.kind == stepMessage && s.from == s.to {
			width = max(width, center(s.from)+selfLabelOffset+textWidth(s.text)+12)
		}
	}
	top := titleHeight + headerHeight + 16

	var body bytes.Buffer
	var bands []band
	y := top
	for _, s := range d.steps {
		switch s.kind {
		case stepPhase:
			if len(bands) > 0 {
				bands[len(bands)-1].end = y
			}
			y += phaseGap
			bands = append(bands, band{name: s.text, start: y - phaseGap})
			y += 6
		case stepNote:
			y += noteRow
			note(&body, center(s.from), y, s.text)
		case stepMessage:
			if s.from == s.to {
				y += selfRow
				selfMessage(&body, center(s.from), y, s)
			} else {
				y += messageRow
				message(&body, center(s.from), center(s.to), y, s)
			}
		}
	}
	y += phaseGap
	if len(bands) > 0 {
		bands[len(bands)-1].end = y
	}
	height := y + bottomMargin

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" `+
		`font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="%d">`+"\n",
		width, height, width, height, fontSize)
	b.WriteString(`<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" ` +
		`markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>` + "\n")
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	if d.title != "" {
		fmt.Fprintf(&b, `<text x="%d" y="26" font-size="15" font-weight="bold">%s</text>`+"\n", 12, escape(d.title))
	}
	for i, bd := range bands {
		fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", bd.start, width,
			bd.end-bd.start, phaseFills[i%len(phaseFills)])
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold" fill="#1a4480">%s</text>`+"\n", bd.start+18,
			escape(bd.name))
	}
	for i, p := range d.participants {
		x := center(i)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999" stroke-dasharray="4 4"/>`+"\n",
			x, titleHeight+headerHeight, x, height-bottomMargin/2)
		header(&b, x, titleHeight, headerHeight, p)
	}
	b.Write(body.Bytes())
	b.WriteString("</svg>\n")
	return b.Bytes()
}

type band struct {
	name       string
	start, end int
}

// center returns the x of participant i's lifeline.
func center(i int) int {
	return phaseMargin + i*columnWidth + columnWidth/2
}

func header(b *bytes.Buffer, x, y, height int, p participant) {
	w := columnWidth - 24
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="#dfe8f6" stroke="#1a4480"/>`+"\n",
		x-w/2, y, w, height-6)
	for i, line := range p.lines {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", x, y+18+i*headerLine,
			escape(line))
	}
}

func message(b *bytes.Buffer, x1, x2, y int, s step) {
	dash := ""
	if s.dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"%s marker-end="url(#head)"/>`+"\n",
		x1, y, x2, y, dash)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (x1+x2)/2, y-6, escape(s.text))
}

// selfMessage draws a step a participant takes on its own as a loop to
// the right of its lifeline.
func selfMessage(b *bytes.Buffer, x, y int, s step) {
	fmt.Fprintf(b, `<path d="M%d,%d h28 v16 h-28" fill="none" stroke="#333" marker-end="url(#head)"/>`+"\n",
		x, y-16)
	fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x+selfLabelOffset, y-4, escape(s.text))
}

func note(b *bytes.Buffer, x, y int, text string) {
	w := textWidth(text) + 16
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="22" fill="#fff8d6" stroke="#b8a24a"/>`+"\n",
		x-w/2, y-18, w)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", x, y-3, escape(text))
}

// textWidth estimates the width of text in pixels.
func textWidth(text string) int {
	return int(float64(len([]rune(text))) * charWidth)
}

// escape returns text with the characters XML gives a meaning escaped.
func escape(text string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(text)
}
