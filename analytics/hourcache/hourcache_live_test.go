package hourcache_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/fleetload"
	"github.com/fleetingest/fleetingest/analytics/hourcache"
	"github.com/fleetingest/fleetingest/analytics/query"
)

func TestWindowsEndingNowShareReadsAndSeeEveryEarlierWrite(t *testing.T) {
	s, c, w := endingNow(t)
	ctx := t.Context()
	vehicles := []string{"v01", "v04", "v07", "v09", "v14", "v21", "v24", "v27"}
	spans := map[string][]query.MeterSpan{}
	for _, v := range vehicles {
		spans[v] = spansOf(t, s.Pool, v, w)
		fromMemory(t, c, s.Pool, v, w, spans[v]) // every settled hour in memory
	}
	db := &hourcache.CountingDB{Pool: s.Pool}

	// Sixteen readers ask all the time; one writer adds a reading of v04 in the hour being
	// written (before the window's end) and then asks: its answer must hold the reading.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var questions atomic.Int64
	for i := range 16 {
		readers.Go(func() {
			for k := i; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				v := vehicles[k%len(vehicles)]
				if _, ok, err := c.Vehicle(ctx, db, v, w, spans[v]); err != nil || !ok {
					t.Errorf("%s: answered %t, %v", v, ok, err)
					return
				}
				questions.Add(1)
			}
		})
	}
	hour := start.Add(11 * time.Hour)
	for i := range 40 {
		ts := hour.Add(56*time.Minute + time.Duration(i)*time.Second)
		if _, err := s.Write(ctx, []fleetload.VehicleReading{{VehicleID: "v04", TS: ts, SOC: 50, DC: 1, Temp: 25, MeterID: "m04"}}, nil, 10); err != nil {
			t.Fatal(err)
		}
		got, ok, err := c.Vehicle(ctx, db, "v04", w, spans["v04"])
		if err != nil || !ok {
			t.Fatalf("write %d: answered %t, %v", i, ok, err)
		}
		want, err := query.Vehicle(ctx, s.Pool, "v04", w, spans["v04"])
		if err != nil {
			t.Fatal(err)
		}
		if g, w := fmt.Sprint(canonical(got)), fmt.Sprint(canonical(want)); g != w {
			t.Fatalf("write %d at %s:\nmemory:    %s\nstatement: %s", i, ts.Format(time.TimeOnly), g, w)
		}
	}
	close(stop)
	readers.Wait()
	n, q := questions.Load()+40, db.Queries()
	if q >= n {
		t.Errorf("%d questions sent %d statements: none shared", n, q)
	}
	t.Logf("%d questions sent %d statements", n, q)
}

func TestAWindowEndingNowIsAnsweredFromTheHourHeldWholeWhileItsVersionHolds(t *testing.T) {
	s, c, w := endingNow(t)
	ctx := t.Context()
	vehicles := []string{"v04", "v07", "v09", "v14", "v27"}
	hour := start.Add(11 * time.Hour)
	answers := map[string][]string{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, v := range vehicles {
			answers[v] = likeStatement(t, c, s.Pool, v, w)
		}
		if at, _, ok := c.LiveHeld(); ok && at.Equal(hour) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hour being written was not read whole within 10s of questions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The hour's rollup rows go behind the versions' back: answers from the hour held do not
	// change; answers read from Postgres would lose the hour.
	for _, table := range []string{"vehicle_hourly", "meter_hourly"} {
		if _, err := s.Pool.Exec(ctx, "DELETE FROM "+table+" WHERE hour = $1", hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vehicles {
		got := canonical(fromMemory(t, c, s.Pool, v, w, spansOf(t, s.Pool, v, w)))
		if fmt.Sprint(got) != fmt.Sprint(answers[v]) {
			t.Fatalf("%s was not answered from the hour held:\nnow:    %v\nbefore: %v", v, got, answers[v])
		}
	}
}
