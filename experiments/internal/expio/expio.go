// Package expio writes an experiment's results: CSV files, a Markdown
// table, PNG line plots (gonum/plot) and a params.json recording the seed,
// parameters and the command that reproduces the run.
package expio

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Out is the results directory of one experiment run.
type Out struct {
	Dir      string
	Progress io.Writer // progress lines; nil: none
}

// New creates dir (and parents).
func New(dir string, progress io.Writer) (*Out, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("expio: %w", err)
	}
	return &Out{Dir: dir, Progress: progress}, nil
}

// Logf prints a progress line.
func (o *Out) Logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// Params records what produced the results: the command and every parameter.
func (o *Out) Params(command string, params map[string]any) error {
	b, err := json.MarshalIndent(map[string]any{"command": command, "params": params}, "", "  ")
	if err != nil {
		return fmt.Errorf("expio: params: %w", err)
	}
	return o.write("params.json", append(b, '\n'))
}

// CSV writes name.csv.
func (o *Out) CSV(name string, header []string, rows [][]string) error {
	var b strings.Builder
	w := csv.NewWriter(&b)
	if err := w.Write(header); err != nil {
		return err
	}
	if err := w.WriteAll(rows); err != nil {
		return fmt.Errorf("expio: %s.csv: %w", name, err)
	}
	return o.write(name+".csv", []byte(b.String()))
}

// Markdown writes name.md.
func (o *Out) Markdown(name, text string) error { return o.write(name+".md", []byte(text)) }

// Table renders a Markdown table.
func Table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// Series is one line of a plot.
type Series struct {
	Name string
	X, Y []float64
}

// LinePlot writes name.png with one line per series.
func (o *Out) LinePlot(name, title, xlabel, ylabel string, series []Series, logX bool) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	palette := []color.RGBA{{0x1f, 0x77, 0xb4, 255}, {0xff, 0x7f, 0x0e, 255}, {0x2c, 0xa0, 0x2c, 255}, {0xd6, 0x27, 0x28, 255}, {0x94, 0x67, 0xbd, 255}, {0x8c, 0x56, 0x4b, 255}}
	for i, s := range series {
		pts := make(plotter.XYs, 0, len(s.X))
		for j := range s.X {
			if logX && s.X[j] <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: s.X[j], Y: s.Y[j]})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("expio: plot %s: %w", name, err)
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		l.Dashes = [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}}[i/len(palette)%2]
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	p.Legend.Top = false
	p.Legend.Left = false
	path := filepath.Join(o.Dir, name+".png")
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("expio: save %s: %w", path, err)
	}
	return nil
}

// Bars is one set of bars of a bar plot: a value per label.
type Bars struct {
	Name   string
	Values []float64
}

// BarPlot writes name.png: for each label a group of bars, one per set.
func (o *Out) BarPlot(name, title, ylabel string, labels []string, sets []Bars) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	palette := []color.RGBA{{0x1f, 0x77, 0xb4, 255}, {0xff, 0x7f, 0x0e, 255}, {0x2c, 0xa0, 0x2c, 255}, {0xd6, 0x27, 0x28, 255}}
	w := vg.Points(math.Max(4, 36/float64(max(len(sets), 1))))
	for i, s := range sets {
		b, err := plotter.NewBarChart(plotter.Values(s.Values), w)
		if err != nil {
			return fmt.Errorf("expio: plot %s: %w", name, err)
		}
		b.Color = palette[i%len(palette)]
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(sets)-1)/2)
		p.Add(b)
		p.Legend.Add(s.Name, b)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 5
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	path := filepath.Join(o.Dir, name+".png")
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("expio: save %s: %w", path, err)
	}
	return nil
}

func (o *Out) write(name string, b []byte) error {
	path := filepath.Join(o.Dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("expio: %w", err)
	}
	o.Logf("wrote %s", path)
	return nil
}
