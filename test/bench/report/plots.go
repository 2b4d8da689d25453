package report

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/lpm-dev/lpm/test/bench/results"
)

// series is one line of a plot over the sizes: the median of each size
// with its range as error bars.
type series struct {
	name         string
	x, y, lo, hi []float64
}

func (s series) Len() int                    { return len(s.x) }
func (s series) XY(i int) (float64, float64) { return s.x[i], s.y[i] }
func (s series) YError(i int) (float64, float64) {
	return s.y[i] - s.lo[i], s.hi[i] - s.y[i]
}

// summarySeries builds a series of one stage of runs over sizes, leaving
// out sizes without a value.
func summarySeries(name string, runs []results.Run, sizes []int, stage string) series {
	s := series{name: name}
	for _, size := range sizes {
		sum := results.Summarize(results.StageValues(runs, size, stage))
		if sum.N == 0 {
			continue
		}
		s.x = append(s.x, float64(size))
		s.y = append(s.y, sum.Median)
		s.lo = append(s.lo, sum.Min)
		s.hi = append(s.hi, sum.Max)
	}
	return s
}

// linePlot draws each series as a line with points and error bars, with a
// tick at each x value of the series and a y axis from 0.
func linePlot(title, xLabel, yLabel string, all []series, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	ticks := map[float64]bool{}
	var marks plot.ConstantTicks
	for _, s := range all {
		for _, x := range s.x {
			if !ticks[x] {
				ticks[x] = true
				marks = append(marks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
			}
		}
	}
	p.X.Tick.Marker = marks
	for i, s := range all {
		if s.Len() == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(s)
		if err != nil {
			return err
		}
		c := plotutil.Color(i)
		line.Color, points.Color = c, c
		points.Shape = plotutil.Shape(i)
		bars, err := plotter.NewYErrorBars(s)
		if err != nil {
			return err
		}
		bars.Color = c
		p.Add(line, points, bars)
		p.Legend.Add(s.name, line, points)
	}
	return p.Save(18*vg.Centimeter, 11*vg.Centimeter, path)
}

// stackedBars draws one stacked bar per category, with one layer per
// stage.
func stackedBars(title, yLabel string, categories []string, stages []string, values map[string][]float64,
	path string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	var below *plotter.BarChart
	for i, stage := range stages {
		v := values[stage]
		if len(v) != len(categories) {
			return fmt.Errorf("stage %s has %d values for %d categories", stage, len(v), len(categories))
		}
		bars, err := plotter.NewBarChart(plotter.Values(v), 1.2*vg.Centimeter)
		if err != nil {
			return err
		}
		bars.Color = stageColor(i)
		bars.LineStyle.Width = 0
		if below != nil {
			bars.StackOn(below)
		}
		below = bars
		p.Add(bars)
		p.Legend.Add(stage, bars)
	}
	p.NominalX(categories...)
	// Room on the left for the legend, away from the bars.
	p.X.Min = -2.2
	return p.Save(18*vg.Centimeter, 13*vg.Centimeter, path)
}

// groupedBars draws, for each category, one bar per group side by side.
func groupedBars(title, yLabel string, categories, groups []string, values map[string][]float64, logY bool,
	path string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	width := 0.8 * vg.Centimeter
	for i, g := range groups {
		v := values[g]
		if logY {
			v = positive(v)
		}
		bars, err := plotter.NewBarChart(plotter.Values(v), width)
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(groups)-1)/2)
		p.Add(bars)
		p.Legend.Add(g, bars)
	}
	p.NominalX(categories...)
	return p.Save(18*vg.Centimeter, 11*vg.Centimeter, path)
}

// positive replaces values that a log axis cannot show.
func positive(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = max(x, 1e-3)
	}
	return out
}

// samplesPlot draws samples over time.
func samplesPlot(title, yLabel string, samples []results.Sample, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the PodMigrations were created"
	p.Y.Label.Text = yLabel
	p.Add(plotter.NewGrid())
	xys := make(plotter.XYs, len(samples))
	for i, s := range samples {
		xys[i].X, xys[i].Y = s.Seconds, s.Value
	}
	line, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	line.Color = plotutil.Color(0)
	p.Add(line)
	p.Y.Min = 0
	return p.Save(18*vg.Centimeter, 9*vg.Centimeter, path)
}

// stageColor returns distinct colors for up to a dozen stacked stages.
func stageColor(i int) color.Color {
	palette := []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
		{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
		{0xbc, 0xbd, 0x22, 0xff}, {0x17, 0xbe, 0xcf, 0xff}, {0x39, 0x3b, 0x79, 0xff}, {0xad, 0x49, 0x4a, 0xff},
	}
	return palette[i%len(palette)]
}

func plotPath(dir, name string) string { return filepath.Join(dir, name) }
