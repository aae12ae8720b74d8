package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// historyTables are the tables partitioned by UTC day.
var historyTables = []string{"meter_telemetry_history", "vehicle_telemetry_history"}

// partitionLockKey serialises partition creation and removal within one database.
const partitionLockKey int64 = 0x666c656574_02

const dayLayout = "20060102"

// PartitionName is the name of table's partition holding the UTC day of t, e.g.
// meter_telemetry_history_p20261127.
func PartitionName(table string, t time.Time) string {
	return table + "_p" + t.UTC().Format(dayLayout)
}

func dayKey(t time.Time) string { return t.UTC().Format(dayLayout) }

func dayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// RefreshPartitions reloads the set of existing partitions from the catalog.
func (s *Store) RefreshPartitions(ctx context.Context) error {
	parts, err := listPartitions(ctx, s.pool)
	if err != nil {
		return err
	}
	perDay := map[string]int{}
	for _, p := range parts {
		if !p.detachPending {
			perDay[p.day]++
		}
	}
	known := make(map[string]struct{}, len(perDay))
	for day, n := range perDay {
		if n == len(historyTables) {
			known[day] = struct{}{}
		}
	}
	s.mu.Lock()
	s.known = known
	s.mu.Unlock()
	return nil
}

// KnownDays returns the UTC days (YYYYMMDD) whose partitions exist, sorted.
func (s *Store) KnownDays() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	days := make([]string, 0, len(s.known))
	for d := range s.known {
		days = append(days, d)
	}
	sort.Strings(days)
	return days
}

// missingDays returns the distinct days of days (as day starts) that are not known.
func (s *Store) missingDays(days map[string]time.Time) []time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var missing []time.Time
	for k, d := range days {
		if _, ok := s.known[k]; !ok {
			missing = append(missing, d)
		}
	}
	return missing
}

// EnsurePartitionsAhead creates the partitions of today and the configured days after it.
func (s *Store) EnsurePartitionsAhead(ctx context.Context) ([]string, error) {
	today := dayStart(s.cfg.Now())
	days := make([]time.Time, 0, s.cfg.PartitionsAhead+1)
	for i := 0; i <= s.cfg.PartitionsAhead; i++ {
		days = append(days, today.AddDate(0, 0, i))
	}
	return s.EnsurePartitions(ctx, days...)
}

// EnsurePartitions creates every history table's partition for the UTC days of days that
// does not exist yet, and returns the names of those it created. It is idempotent and safe
// to call concurrently (an advisory lock serialises creators), and skips the database when
// every day is already known.
func (s *Store) EnsurePartitions(ctx context.Context, days ...time.Time) ([]string, error) {
	want := map[string]time.Time{}
	for _, d := range days {
		want[dayKey(d)] = dayStart(d)
	}
	missing := s.missingDays(want)
	if len(missing) == 0 {
		return nil, nil
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].Before(missing[j]) })
	var created []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		created = created[:0]
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockKey); err != nil {
			return fmt.Errorf("taking partition lock: %w", err)
		}
		// Creating a partition locks its parent; rather than queue every writer behind a
		// long reader, give up and let the caller retry.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			return fmt.Errorf("setting lock timeout: %w", err)
		}
		for _, day := range missing {
			for _, table := range historyTables {
				name, err := createPartition(ctx, tx, table, day)
				if err != nil {
					return err
				}
				if name != "" {
					created = append(created, name)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("creating partitions: %w", err)
	}
	s.mu.Lock()
	for _, d := range missing {
		s.known[dayKey(d)] = struct{}{}
	}
	s.mu.Unlock()
	if len(created) > 0 {
		s.log.Info("created history partitions", "partitions", created)
	}
	return created, nil
}

// createPartition creates table's partition for day unless it exists; it returns the
// partition's name when it created it.
func createPartition(ctx context.Context, db DBTX, table string, day time.Time) (string, error) {
	name := PartitionName(table, day)
	var exists bool
	if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("looking up partition %s: %w", name, err)
	}
	if exists {
		return "", nil
	}
	from, to := day.Format(time.RFC3339), day.AddDate(0, 0, 1).Format(time.RFC3339)
	sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{table}.Sanitize(), from, to)
	if _, err := db.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("creating partition %s: %w", name, err)
	}
	return name, nil
}

type partition struct {
	table, name, day string
	detachPending    bool
}

// listPartitions reads the history tables' partitions from the catalog.
func listPartitions(ctx context.Context, db DBTX) ([]partition, error) {
	rows, err := db.Query(ctx, `
		SELECT p.relname, c.relname, i.inhdetachpending
		FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE i.inhparent = ANY (ARRAY['meter_telemetry_history'::regclass, 'vehicle_telemetry_history'::regclass])`)
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	var parts []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.table, &p.name, &p.detachPending); err != nil {
			return nil, fmt.Errorf("listing partitions: %w", err)
		}
		day, ok := strings.CutPrefix(p.name, p.table+"_p")
		if _, err := time.Parse(dayLayout, day); !ok || err != nil {
			continue // not one of ours
		}
		p.day = day
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	return parts, nil
}

// Retention bounds how long data is kept.
type Retention struct {
	// History is how long raw readings are kept; a day's partition is dropped once the whole
	// day is older than this. Default 90 days.
	History time.Duration
	// Rollup is how long hourly rollups are kept. Default 2 years.
	Rollup time.Duration
}

func (r Retention) withDefaults() Retention {
	if r.History == 0 {
		r.History = DefaultHistoryRetention
	}
	if r.Rollup == 0 {
		r.Rollup = DefaultRollupRetention
	}
	return r
}

// Dropped is what DropExpired removed.
type Dropped struct {
	// Partitions are the names of the history partitions dropped.
	Partitions []string
	// MeterHourly and VehicleHourly count the rollup rows deleted.
	MeterHourly, VehicleHourly int64
}

// DropExpired detaches and drops the history partitions whose whole day is older than the
// history retention, and deletes rollup rows older than the rollup retention. When another
// caller is already doing this on the same database it returns at once with nothing done.
func (s *Store) DropExpired(ctx context.Context, r Retention) (Dropped, error) {
	r = r.withDefaults()
	var d Dropped
	if r.History < 0 || r.Rollup < 0 {
		return d, fmt.Errorf("retention must not be negative: %+v", r)
	}
	now := s.cfg.Now()
	historyCutoff := now.Add(-r.History)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return d, fmt.Errorf("acquiring connection to drop expired data: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", partitionLockKey+1).Scan(&locked); err != nil {
		return d, fmt.Errorf("taking retention lock: %w", err)
	}
	if !locked {
		return d, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", partitionLockKey+1) //nolint:errcheck // released with the session otherwise

	parts, err := listPartitions(ctx, conn)
	if err != nil {
		return d, err
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].name < parts[j].name })
	for _, p := range parts {
		day, _ := time.Parse(dayLayout, p.day)
		if day.AddDate(0, 0, 1).After(historyCutoff) {
			continue
		}
		s.mu.Lock()
		delete(s.known, p.day)
		s.mu.Unlock()
		if err := dropPartition(ctx, conn, p); err != nil {
			return d, err
		}
		// The day's raw readings are gone: its hours change for readers that keep them.
		if _, err := conn.Exec(ctx, "UPDATE rollup_hours SET version = nextval('rollup_version') WHERE hour >= $1 AND hour < $2",
			day, day.AddDate(0, 0, 1)); err != nil {
			return d, fmt.Errorf("changing the versions of the hours of %s: %w", p.name, err)
		}
		d.Partitions = append(d.Partitions, p.name)
	}

	rollupCutoff := now.Add(-r.Rollup)
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM meter_hourly WHERE hour < $1", rollupCutoff)
		if err != nil {
			return fmt.Errorf("deleting expired meter rollups: %w", err)
		}
		d.MeterHourly = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, "DELETE FROM vehicle_hourly WHERE hour < $1", rollupCutoff); err != nil {
			return fmt.Errorf("deleting expired vehicle rollups: %w", err)
		}
		d.VehicleHourly = tag.RowsAffected()
		// The hours are gone with their versions, in the same transaction.
		if _, err := tx.Exec(ctx, "DELETE FROM rollup_hours WHERE hour < $1", rollupCutoff); err != nil {
			return fmt.Errorf("deleting versions of expired rollup hours: %w", err)
		}
		return nil
	}); err != nil {
		return d, err
	}
	if len(d.Partitions) > 0 || d.MeterHourly > 0 || d.VehicleHourly > 0 {
		s.log.Info("dropped expired data", "partitions", d.Partitions, "meter_hourly_rows", d.MeterHourly, "vehicle_hourly_rows", d.VehicleHourly)
	}
	return d, nil
}

// dropPartition detaches p without blocking writers of the parent (CONCURRENTLY, which needs
// its own transaction; an earlier interrupted detach is finalised) and drops it.
func dropPartition(ctx context.Context, db DBTX, p partition) error {
	parent, child := pgx.Identifier{p.table}.Sanitize(), pgx.Identifier{p.name}.Sanitize()
	mode := "CONCURRENTLY"
	if p.detachPending {
		mode = "FINALIZE"
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s %s", parent, child, mode)); err != nil {
		return fmt.Errorf("detaching partition %s: %w", p.name, err)
	}
	if _, err := db.Exec(ctx, "DROP TABLE IF EXISTS "+child); err != nil {
		return fmt.Errorf("dropping partition %s: %w", p.name, err)
	}
	return nil
}
