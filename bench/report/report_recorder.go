package report

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recorder collects what one benchmark measures. Its Metric reports to the benchmark as
// b.ReportMetric does; when the benchmark ends without failing, the record is merged into the
// results file (see the package doc). A failed run records nothing, so that it does not
// replace the figures of the last good one.
type Recorder struct {
	b   benchmark
	dir string

	mu    sync.Mutex
	bench Benchmark
}

// benchmark is what a Recorder uses of *testing.B.
type benchmark interface {
	Name() string
	ReportMetric(n float64, unit string)
	Cleanup(f func())
	Failed() bool
	Skipped() bool
	Errorf(format string, args ...any)
}

// New returns the Recorder of b. Call it once per benchmark function run.
func New(b *testing.B) *Recorder {
	b.Helper()
	dir, err := Dir()
	if err != nil {
		b.Fatal(err)
	}
	return newRecorder(b, dir)
}

func newRecorder(b benchmark, dir string) *Recorder {
	r := &Recorder{b: b, dir: dir}
	b.Cleanup(r.flush)
	return r
}

// As sets the design the benchmark measures and the label that names it in charts.
func (r *Recorder) As(design Design, label string) *Recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bench.Design, r.bench.Label = design, label
	return r
}

// Metric reports value in unit to the benchmark (b.ReportMetric) and records it.
func (r *Recorder) Metric(value float64, unit string) {
	r.b.ReportMetric(value, unit)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bench.Metrics == nil {
		r.bench.Metrics = map[string]float64{}
	}
	r.bench.Metrics[unit] = round(value)
}

// Latency records the latency percentiles.
func (r *Recorder) Latency(l Latency) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bench.Latency = &l
}

// Accepted records the readings accepted in each second of the run.
func (r *Recorder) Accepted(perSecond []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bench.Accepted = perSecond
}

// Committed records the readings committed in each second of the run.
func (r *Recorder) Committed(perSecond []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bench.Committed = perSecond
}

func (r *Recorder) flush() {
	if r.dir == "" || r.b.Failed() || r.b.Skipped() {
		return
	}
	r.mu.Lock()
	bench := r.bench
	r.mu.Unlock()
	bench.Recorded = time.Now().UTC().Format(time.DateOnly)
	bench.CPUs = runtime.NumCPU()
	name := r.b.Name()
	if err := MergeFile(r.dir, Results{Benchmarks: map[string]Benchmark{name: bench}}); err != nil {
		r.b.Errorf("recording %s: %v", name, err)
	}
}

// Group is the top-level benchmark a full benchmark name belongs to ("BenchmarkIngest" for
// "BenchmarkIngest/batch").
func Group(name string) string {
	group, _, _ := strings.Cut(name, "/")
	return group
}

// LabelOf is how charts name benchmark name: its label, or its name below its group.
func LabelOf(name string, b Benchmark) string {
	if b.Label != "" {
		return b.Label
	}
	if _, sub, ok := strings.Cut(name, "/"); ok {
		return sub
	}
	return strings.TrimPrefix(name, "Benchmark")
}
