package hourcache

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// countingDB counts the statements sent through it.
type countingDB struct {
	*pgxpool.Pool
	queries atomic.Int64
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.queries.Add(1)
	return c.Pool.Query(ctx, sql, args...)
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return c.Pool.Exec(ctx, sql, args...)
}

func TestVersionReadsAreSharedAndNeverOlderThanTheQuestion(t *testing.T) {
	cluster := pgtest.Start(t)
	ctx := t.Context()
	pool, err := store.OpenPool(ctx, pgtest.NewDatabase(t, cluster), store.PoolConfig{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	h := time.Date(2026, 11, 20, 5, 0, 0, 0, time.UTC)
	db := &countingDB{Pool: pool}
	vr := newVersionReads()

	// Readers ask all the time; one writer changes the hour's version and then asks: its
	// answer must hold the version it wrote (a read sent before its question would not).
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var calls atomic.Int64
	for range 16 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := vr.get(ctx, db, hourRange{h, h.Add(3 * time.Hour)}, struct{}{}); err != nil {
					t.Error(err)
					return
				}
				calls.Add(1)
			}
		})
	}
	for i := range 200 {
		var want int64
		if err := pool.QueryRow(ctx, `INSERT INTO rollup_hours (hour, version) VALUES ($1, nextval('rollup_version'))
			ON CONFLICT (hour) DO UPDATE SET version = excluded.version RETURNING version`, h.Add(time.Hour)).Scan(&want); err != nil {
			t.Fatal(err)
		}
		got, err := vr.get(ctx, db, hourRange{h, h.Add(3 * time.Hour)}, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		if got[h.Add(time.Hour)] != want {
			t.Fatalf("write %d: read version %d after writing %d", i, got[h.Add(time.Hour)], want)
		}
	}
	close(stop)
	readers.Wait()
	if n, q := calls.Load()+200, db.queries.Load(); q >= n {
		t.Errorf("%d questions sent %d reads: none shared", n, q)
	} else {
		t.Logf("%d questions sent %d reads", n, q)
	}
}
