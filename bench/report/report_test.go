package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	batch := Benchmark{Design: Fleetingest, Metrics: map[string]float64{"readings/s": 1000}}
	batchAgain := Benchmark{Design: Fleetingest, Metrics: map[string]float64{"readings/s": 1200}}
	seed := Benchmark{Design: Seed, Metrics: map[string]float64{"readings/s": 100}}
	for _, tc := range []struct {
		name         string
		base, update map[string]Benchmark
		want         map[string]Benchmark
	}{
		{"a first record goes into empty results", nil, map[string]Benchmark{"B/batch": batch}, map[string]Benchmark{"B/batch": batch}},
		{"records of benchmarks not run again are kept", map[string]Benchmark{"B/seed": seed}, map[string]Benchmark{"B/batch": batch},
			map[string]Benchmark{"B/seed": seed, "B/batch": batch}},
		{"a benchmark run again replaces its record", map[string]Benchmark{"B/batch": batch, "B/seed": seed}, map[string]Benchmark{"B/batch": batchAgain},
			map[string]Benchmark{"B/batch": batchAgain, "B/seed": seed}},
		{"an empty update changes nothing", map[string]Benchmark{"B/seed": seed}, nil, map[string]Benchmark{"B/seed": seed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := Results{Benchmarks: tc.base}
			got := Merge(base, Results{Benchmarks: tc.update})
			if !reflect.DeepEqual(got.Benchmarks, tc.want) {
				t.Errorf("Merge = %+v, want %+v", got.Benchmarks, tc.want)
			}
			if len(base.Benchmarks) != len(tc.base) {
				t.Errorf("Merge changed its base: %+v", base.Benchmarks)
			}
		})
	}
}

func TestEncodeIsSortedIndentedAndRoundTrips(t *testing.T) {
	r := Results{Benchmarks: map[string]Benchmark{
		"BenchmarkIngest/single": {Design: Fleetingest, Metrics: map[string]float64{"readings/s": 12130.5, "p99-ms": 30}},
		"BenchmarkIngest/copy-baseline": {Design: RawCopy, Label: "raw COPY", Recorded: "2026-01-02", CPUs: 2,
			Metrics: map[string]float64{"readings/s": 236797}},
		"BenchmarkIngest/seed-design-baseline": {Design: Seed, Latency: &Latency{P50: 46, P90: 60, P99: 81, P999: 120.5},
			Accepted: []float64{2600, 2700}},
	}}
	var buf bytes.Buffer
	if err := Encode(&buf, r); err != nil {
		t.Fatal(err)
	}
	want := `{
  "benchmarks": {
    "BenchmarkIngest/copy-baseline": {
      "design": "raw COPY",
      "label": "raw COPY",
      "recorded": "2026-01-02",
      "cpus": 2,
      "metrics": {
        "readings/s": 236797
      }
    },
    "BenchmarkIngest/seed-design-baseline": {
      "design": "seed",
      "latencyMs": {
        "p50": 46,
        "p90": 60,
        "p99": 81,
        "p99.9": 120.5
      },
      "acceptedPerSecond": [
        2600,
        2700
      ]
    },
    "BenchmarkIngest/single": {
      "design": "fleetingest",
      "metrics": {
        "p99-ms": 30,
        "readings/s": 12130.5
      }
    }
  }
}
`
	if buf.String() != want {
		t.Errorf("Encode wrote\n%s\nwant\n%s", buf.String(), want)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Decode(Encode(r)) = %+v, want %+v", got, r)
	}
}

func TestDecodeEmptyInputIsEmptyResults(t *testing.T) {
	got, err := Decode(bytes.NewReader(nil))
	if err != nil || got.Benchmarks == nil || len(got.Benchmarks) != 0 {
		t.Errorf("Decode(empty) = %+v, %v; want empty results", got, err)
	}
	if _, err := Decode(bytes.NewReader([]byte("{not json"))); err == nil {
		t.Error("Decode of broken JSON gave no error")
	}
}

func TestMergeFileKeepsEveryConcurrentRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench")
	if err := MergeFile(dir, Results{Benchmarks: map[string]Benchmark{"BenchmarkOld": {Metrics: map[string]float64{"x": 1}}}}); err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			errs <- MergeFile(dir, Results{Benchmarks: map[string]Benchmark{fmt.Sprintf("BenchmarkNew/%d", i): {Metrics: map[string]float64{"x": float64(i)}}}})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Benchmarks) != writers+1 {
		t.Errorf("results hold %d benchmarks, want %d: %+v", len(got.Benchmarks), writers+1, got.Benchmarks)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the folder holds %d files, want only %s", len(entries), FileName)
	}
}

func TestDirTakesARelativeFolderFromTheModuleRoot(t *testing.T) {
	root := t.TempDir()
	pkg := filepath.Join(root, "bench", "ingest")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)
	for _, tc := range []struct{ env, want string }{
		{"", ""},
		{"bench", filepath.Join(root, "bench")},
		{"/var/tmp/results", "/var/tmp/results"},
	} {
		t.Setenv(EnvDir, tc.env)
		got, err := Dir()
		if err != nil || got != tc.want {
			t.Errorf("%s=%q: Dir() = %q, %v; want %q", EnvDir, tc.env, got, err, tc.want)
		}
	}
}

func TestLatencyOf(t *testing.T) {
	got := LatencyOf(func(p float64) time.Duration { return time.Duration(p * float64(time.Millisecond)) })
	want := Latency{P50: 50, P90: 90, P99: 99, P999: 99.9}
	if got != want {
		t.Errorf("LatencyOf = %+v, want %+v", got, want)
	}
}

func TestSamplerKeepsTheGrowthOfEachPeriod(t *testing.T) {
	var count atomic.Int64
	s := startSampler(func() (float64, error) { return float64(count.Add(10)), nil }, time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for count.Load() < 60 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got, err := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 4 {
		t.Fatalf("%d samples, want at least 4", len(got))
	}
	for i, v := range got {
		if v != 10 {
			t.Errorf("sample %d = %v, want the 10 the count grew by", i, v)
		}
	}
	if again, _ := s.Stop(); len(again) != len(got) {
		t.Errorf("a second Stop gave %d samples, want the same %d", len(again), len(got))
	}
}

func TestSamplerReportsAReadError(t *testing.T) {
	s := startSampler(func() (float64, error) { return 0, os.ErrClosed }, time.Millisecond)
	if _, err := s.Stop(); err == nil {
		t.Error("Stop gave no error from a count that cannot be read")
	}
}

// fakeB stands in for *testing.B, which only the testing package can make with a name.
type fakeB struct {
	name     string
	failed   bool
	reported map[string]float64
	cleanups []func()
	errs     []string
}

func (f *fakeB) Name() string                        { return f.name }
func (f *fakeB) ReportMetric(n float64, unit string) { f.reported[unit] = n }
func (f *fakeB) Cleanup(fn func())                   { f.cleanups = append(f.cleanups, fn) }
func (f *fakeB) Failed() bool                        { return f.failed }
func (f *fakeB) Skipped() bool                       { return false }
func (f *fakeB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestRecorderMergesWhatTheBenchmarkReportedWhenItEnds(t *testing.T) {
	dir := t.TempDir()
	b := &fakeB{name: "BenchmarkIngest/batch", reported: map[string]float64{}}
	r := newRecorder(b, dir).As(Fleetingest, "batches of 500")
	r.Metric(69371.123456, "readings/s")
	r.Latency(Latency{P50: 60, P99: 115})
	r.Accepted([]float64{70000, 68000})
	r.Committed([]float64{65000, 72000})
	if b.reported["readings/s"] != 69371.123456 {
		t.Errorf("the benchmark was told %v readings/s, want the value as given", b.reported["readings/s"])
	}
	b.end()
	if len(b.errs) > 0 {
		t.Fatal(b.errs)
	}
	got, err := ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	rec := got.Benchmarks["BenchmarkIngest/batch"]
	want := Benchmark{Design: Fleetingest, Label: "batches of 500", Recorded: rec.Recorded, CPUs: rec.CPUs,
		Metrics: map[string]float64{"readings/s": 69371.123}, Latency: &Latency{P50: 60, P99: 115},
		Accepted: []float64{70000, 68000}, Committed: []float64{65000, 72000}}
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("recorded %+v, want %+v", rec, want)
	}
	if _, err := time.Parse(time.DateOnly, rec.Recorded); err != nil || rec.CPUs < 1 {
		t.Errorf("recorded on %q with %d CPUs, want a date and the machine's cores", rec.Recorded, rec.CPUs)
	}
}

func TestRecorderRecordsNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    string
		failed bool
	}{
		{"when the benchmark failed", "bench", true},
		{"when no folder is set", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wd := t.TempDir()
			t.Chdir(wd)
			b := &fakeB{name: "BenchmarkIngest/batch", reported: map[string]float64{}, failed: tc.failed}
			newRecorder(b, tc.dir).Metric(1, "readings/s")
			b.end()
			if b.reported["readings/s"] != 1 || len(b.errs) > 0 {
				t.Errorf("the benchmark was told %v with errors %v, want the metric reported all the same", b.reported, b.errs)
			}
			for _, path := range []string{filepath.Join(wd, "bench", FileName), filepath.Join(wd, FileName)} {
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("%s was written (%v)", path, err)
				}
			}
		})
	}
}

func TestLabelOfAndGroup(t *testing.T) {
	for _, tc := range []struct {
		name, label, wantLabel, wantGroup string
	}{
		{"BenchmarkIngest/batch", "", "batch", "BenchmarkIngest"},
		{"BenchmarkIngest/batch", "batches of 500", "batches of 500", "BenchmarkIngest"},
		{"BenchmarkGrowOnline", "", "GrowOnline", "BenchmarkGrowOnline"},
		{"BenchmarkAnalytics/performance/conns=1", "", "performance/conns=1", "BenchmarkAnalytics"},
	} {
		if got := LabelOf(tc.name, Benchmark{Label: tc.label}); got != tc.wantLabel {
			t.Errorf("LabelOf(%q, label %q) = %q, want %q", tc.name, tc.label, got, tc.wantLabel)
		}
		if got := Group(tc.name); got != tc.wantGroup {
			t.Errorf("Group(%q) = %q, want %q", tc.name, got, tc.wantGroup)
		}
	}
}
