package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one reading of a request, for the accepted energy (and the ledger) once it is
// answered.
type entry struct {
	device int
	mwh    int64
	at     time.Time
}

// job is one request: its body and the readings in it. Jobs are reused.
type job struct {
	body    []byte
	entries []entry
	// first is the run index of its first reading; from and to the timestamps of its
	// first and last readings.
	first    int
	from, to time.Time
}

// sender builds the run's requests in one goroutine (the fleet advances in order) and
// posts them from Concurrency workers.
type sender struct {
	cfg   Config
	fleet *fleet
	enc   *encoder
	start time.Time
	// per is the readings per request; batch says whether they go to the batch endpoint.
	per   int
	batch bool
	url   string
	ctype string

	jobs, free chan *job
	// accepted is the energy accepted per device, in mWh.
	accepted                                     []atomic.Int64
	requests, sent, acceptedN, rejectedN, failed atomic.Int64
	latency                                      histogram

	mu                       sync.Mutex
	firstError, firstRejects string
}

func newSender(cfg Config, f *fleet, start time.Time) *sender {
	s := &sender{
		cfg: cfg, fleet: f, enc: newEncoder(cfg), start: start,
		per: 1, url: cfg.URL + "/v1/telemetry", ctype: "application/json",
		jobs:     make(chan *job, cfg.Concurrency),
		free:     make(chan *job, 2*cfg.Concurrency+1),
		accepted: make([]atomic.Int64, cfg.devices()),
	}
	if cfg.BatchSize > 0 {
		s.per, s.batch = cfg.BatchSize, true
		s.url, s.ctype = cfg.URL+"/v1/telemetry/batch", "application/x-ndjson"
	}
	for range cap(s.free) {
		s.free <- &job{entries: make([]entry, 0, s.per)}
	}
	return s
}

// run sends the readings and fills res with what happened.
func (s *sender) run(ctx context.Context, res *Result) {
	began := s.cfg.Now()
	var wg sync.WaitGroup
	// Requests outlive ctx: once sent, a reading's answer decides whether it counts.
	posting := context.WithoutCancel(ctx)
	for range s.cfg.Concurrency {
		wg.Go(func() { s.work(posting) })
	}
	stopProgress := s.reportProgress(began)
	res.FirstReading, res.LastReading = s.produce(ctx, began)
	wg.Wait()
	stopProgress()
	res.Duration = s.cfg.Now().Sub(began)
	res.Requests = int(s.requests.Load())
	res.Sent = int(s.sent.Load())
	res.Accepted = int(s.acceptedN.Load())
	res.Rejected = int(s.rejectedN.Load())
	res.Failed = int(s.failed.Load())
	res.FirstError, res.FirstRejection = s.firstError, s.firstRejects
	res.latency = &s.latency
}

// produce advances the fleet interval by interval, waiting for each interval's release
// (MaxLead before its timestamp; the timestamp itself when live) and for the rate, and
// hands full requests to the workers. It returns the first and last timestamps sent.
func (s *sender) produce(ctx context.Context, began time.Time) (first, last time.Time) {
	defer close(s.jobs)
	limit := s.cfg.Readings
	if limit == 0 {
		limit = math.MaxInt
	}
	lead := s.cfg.MaxLead
	if s.cfg.Duration > 0 {
		lead = 0
	}
	var out []reading
	var tail []byte
	j, n := s.take(ctx), 0
	dispatch := func() bool {
		from, to := j.from, j.to
		if !s.dispatch(ctx, j, began) {
			return false
		}
		if first.IsZero() {
			first = from
		}
		last = to
		j = s.take(ctx)
		return j != nil
	}
	for k := 0; j != nil && k < s.fleet.intervals && n < limit; k++ {
		at := s.start.Add(time.Duration(k+1) * s.cfg.Interval)
		if sleep(ctx, at.Add(-lead).Sub(s.cfg.Now())) != nil {
			return first, last
		}
		out = s.fleet.step(k, out[:0])
		tail = appendTail(tail[:0], at)
		for i := 0; i < len(out) && n < limit; i++ {
			if len(j.entries) == 0 {
				j.first, j.from = n, at
			}
			j.body = s.enc.append(j.body, &out[i], tail)
			if s.batch {
				j.body = append(j.body, '\n')
			}
			j.entries = append(j.entries, entry{device: out[i].device, mwh: out[i].mwh, at: at})
			j.to = at
			n++
			if len(j.entries) == s.per && !dispatch() {
				return first, last
			}
		}
		// A batch waits for the next interval only when that one is due already.
		next := at.Add(s.cfg.Interval - lead)
		if len(j.entries) > 0 && next.After(s.cfg.Now()) && !dispatch() {
			return first, last
		}
	}
	if j != nil && len(j.entries) > 0 {
		dispatch()
	}
	return first, last
}

// take returns a free job, emptied, or nil when ctx ended.
func (s *sender) take(ctx context.Context) *job {
	select {
	case j := <-s.free:
		j.body, j.entries = j.body[:0], j.entries[:0]
		return j
	case <-ctx.Done():
		return nil
	}
}

// dispatch hands j to the workers once the rate allows; false when ctx ended first.
func (s *sender) dispatch(ctx context.Context, j *job, began time.Time) bool {
	if s.cfg.Rate > 0 {
		due := began.Add(time.Duration(float64(j.first) / s.cfg.Rate * float64(time.Second)))
		if sleep(ctx, due.Sub(s.cfg.Now())) != nil {
			return false
		}
	}
	select {
	case s.jobs <- j:
		return true
	case <-ctx.Done():
		return false
	}
}

// work posts jobs until there are no more.
func (s *sender) work(ctx context.Context) {
	var rejected []int
	for j := range s.jobs {
		t0 := time.Now()
		var err error
		rejected, err = s.post(ctx, j, rejected[:0])
		took := time.Since(t0)
		s.requests.Add(1)
		s.sent.Add(int64(len(j.entries)))
		if err != nil {
			s.failed.Add(1)
			s.note(&s.firstError, err.Error())
		} else {
			s.latency.record(took)
			s.count(j, rejected)
		}
		s.free <- j
	}
}

// count adds the readings of an answered job: all but those rejected (indices, sorted).
func (s *sender) count(j *job, rejected []int) {
	s.rejectedN.Add(int64(len(rejected)))
	s.acceptedN.Add(int64(len(j.entries) - len(rejected)))
	r := 0
	for i, e := range j.entries {
		if r < len(rejected) && rejected[r] == i {
			r++
			continue
		}
		if e.mwh != 0 {
			s.accepted[e.device].Add(e.mwh)
		}
		if s.cfg.Acknowledged != nil {
			s.cfg.Acknowledged(s.cfg.deviceID(e.device), e.at)
		}
	}
}

// note keeps the first message of a kind.
func (s *sender) note(first *string, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *first == "" {
		*first = msg
	}
}

// post sends j and returns the indices of its readings the gateway rejected (appended to
// rejected, sorted), or an error when the request failed (no answer, 5xx, an answer that
// does not decode): then none of its readings counts.
func (s *sender) post(ctx context.Context, j *job, rejected []int) ([]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(j.body))
	if err != nil {
		return rejected, err
	}
	req.Header.Set("Content-Type", s.ctype)
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return rejected, err
	}
	defer func() { _ = resp.Body.Close() }() // read to the end or failed: closing only frees the connection
	ok := resp.StatusCode/100 == 2
	if ok && !s.batch {
		_, err := io.Copy(io.Discard, resp.Body)
		return rejected, err
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return rejected, fmt.Errorf("reading the answer: %w", err)
	}
	switch {
	case resp.StatusCode/100 == 4:
		s.note(&s.firstRejects, clip(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(data))))
		for i := range j.entries {
			rejected = append(rejected, i)
		}
		return rejected, nil
	case !ok:
		return rejected, fmt.Errorf("%s: %s", resp.Status, clip(string(bytes.TrimSpace(data))))
	}
	var answer struct {
		Rejected []struct {
			Index int             `json:"index"`
			Error json.RawMessage `json:"error"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return rejected, fmt.Errorf("decoding the batch answer: %w", err)
	}
	for _, r := range answer.Rejected {
		if r.Index >= 0 && r.Index < len(j.entries) {
			rejected = append(rejected, r.Index)
		}
	}
	if len(answer.Rejected) > 0 {
		s.note(&s.firstRejects, clip(string(answer.Rejected[0].Error)))
	}
	slices.Sort(rejected)
	return slices.Compact(rejected), nil
}

// reportProgress calls Progress every ProgressEvery until the returned stop is called.
func (s *sender) reportProgress(began time.Time) (stop func()) {
	if s.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.cfg.Progress(s.progress(began))
			case <-done:
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func (s *sender) progress(began time.Time) Progress {
	return Progress{
		Elapsed:  s.cfg.Now().Sub(began),
		Requests: int(s.requests.Load()),
		Sent:     int(s.sent.Load()),
		Accepted: int(s.acceptedN.Load()),
		Rejected: int(s.rejectedN.Load()),
		Failed:   int(s.failed.Load()),
		P50:      s.latency.percentile(50),
		P99:      s.latency.percentile(99),
	}
}

// clip shortens an answer quoted in the report.
func clip(s string) string {
	const most = 300
	if len(s) <= most {
		return s
	}
	return s[:most] + "…"
}
