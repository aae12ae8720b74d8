package query

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// copyStream builds a binary COPY stream: a header with ext as its extension, the rows (nil
// fields are NULL), the trailer.
func copyStream(ext []byte, rows [][][]byte) []byte {
	var b []byte
	b = append(b, copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ext)))
	b = append(b, ext...)
	for _, r := range rows {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		for _, f := range r {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // -1
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, math.MaxUint16) // -1
}

// decodeAll writes stream to a decoder in the given pieces and returns the rows it decoded
// (as copies) and whether it saw the trailer.
func decodeAll(t *testing.T, pieces [][]byte) ([][][]byte, bool) {
	t.Helper()
	var got [][][]byte
	d := &copyDecoder{row: func(f [][]byte) error {
		row := make([][]byte, len(f))
		for i, x := range f {
			if x != nil {
				row[i] = append([]byte{}, x...)
			}
		}
		got = append(got, row)
		return nil
	}}
	for _, p := range pieces {
		if n, err := d.Write(p); err != nil || n != len(p) {
			t.Fatalf("write of %d bytes: %d, %v", len(p), n, err)
		}
	}
	return got, d.ended
}

func TestCopyDecoderDecodesRowsSplitAnywhere(t *testing.T) {
	rows := [][][]byte{
		{[]byte("meter-1"), nil, binary.BigEndian.AppendUint64(nil, math.Float64bits(-1.5))},
		{[]byte(""), []byte(strings.Repeat("é", 300)), nil},
		{},
		{[]byte("x")},
	}
	stream := copyStream([]byte("ext!"), rows)
	equal := func(got [][][]byte) bool {
		return slices.EqualFunc(got, rows, func(a, b [][]byte) bool {
			return slices.EqualFunc(a, b, func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) })
		})
	}
	// Whole; cut once at every byte; a byte at a time.
	if got, ended := decodeAll(t, [][]byte{stream}); !ended || !equal(got) {
		t.Fatalf("whole stream: rows %q, trailer %v", got, ended)
	}
	for cut := range len(stream) + 1 {
		got, ended := decodeAll(t, [][]byte{stream[:cut], stream[cut:]})
		if !ended || !equal(got) {
			t.Fatalf("cut at %d: rows %q, trailer %v", cut, got, ended)
		}
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	if got, ended := decodeAll(t, bytewise); !ended || !equal(got) {
		t.Fatalf("byte by byte: rows %q, trailer %v", got, ended)
	}
	// Without its trailer the stream is incomplete, whatever rows came.
	if _, ended := decodeAll(t, [][]byte{stream[:len(stream)-2]}); ended {
		t.Fatal("a stream without its trailer was taken as complete")
	}
}

func TestCopyDecoderRejectsWhatIsNotABinaryCopy(t *testing.T) {
	d := &copyDecoder{row: func([][]byte) error { return nil }}
	if _, err := d.Write([]byte("1\tmeter-1\t2.5\n\\.\n......")); err == nil || !strings.Contains(err.Error(), "not a binary COPY") {
		t.Errorf("text COPY: %v", err)
	}
	stream := copyStream(nil, [][][]byte{{[]byte("a")}})
	d = &copyDecoder{row: func([][]byte) error { return nil }}
	if _, err := d.Write(append(stream, 0, 1)); err == nil || !strings.Contains(err.Error(), "after the trailer") {
		t.Errorf("data after the trailer: %v", err)
	}
}

func TestCopyValuesCheckTheirSize(t *testing.T) {
	if _, err := copyInt32([]byte{1, 2}); err == nil {
		t.Error("an int4 of 2 bytes was taken")
	}
	if _, err := copyFloat64(nil); err == nil {
		t.Error("a NULL float8 was taken")
	}
	if _, err := copyTime(binary.BigEndian.AppendUint64(nil, math.MaxInt64)); err == nil {
		t.Error("an infinite timestamp was taken")
	}
}

// TestCopyOutReadsWhatPostgresSends compares every value of a binary COPY from a real server
// with the same rows read by pgx, through each kind of DBTX.
func TestCopyOutReadsWhatPostgresSends(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t, cluster))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const sel = `SELECT i, 'dev-' || i || repeat('é', i % 3) || CASE WHEN i = 7 THEN repeat('x', 70000) ELSE '' END,
	       (i - 500)::float8 / 3, (-i)::int8 * 1000000007,
	       CASE WHEN i % 5 = 0 THEN NULL ELSE '2026-11-19T11:00:00Z'::timestamptz + i * interval '1 hour 1 microsecond' END
	  FROM generate_series(1, 3000) i`
	type rec struct {
		i    int32
		s    string
		f    float64
		n    int64
		ts   time.Time
		null bool
	}
	var want []rec
	rows, err := pool.Query(ctx, sel+" ORDER BY i")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r rec
		var ts *time.Time
		if err := rows.Scan(&r.i, &r.s, &r.f, &r.n, &ts); err != nil {
			t.Fatal(err)
		}
		if r.null = ts == nil; !r.null {
			r.ts = ts.UTC()
		}
		want = append(want, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	read := func(db DBTX) []rec {
		var got []rec
		err := copyOut(ctx, db, "COPY ("+sel+" ORDER BY i) TO STDOUT (FORMAT binary)", func(f [][]byte) error {
			var r rec
			var err1, err2, err3, err4 error
			r.i, err1 = copyInt32(f[0])
			r.s = string(f[1])
			r.f, err2 = copyFloat64(f[2])
			r.n, err3 = copyInt64(f[3])
			if r.null = f[4] == nil; !r.null {
				r.ts, err4 = copyTime(f[4])
			}
			got = append(got, r)
			return errors.Join(err1, err2, err3, err4)
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(name string, got []rec) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", name, len(got), len(want))
		}
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("%s: row %d = %+v, want %+v", name, k, got[k], want[k])
			}
		}
	}
	check("pool", read(pool))
	check("a type embedding a pool", read(struct{ *pgxpool.Pool }{pool}))
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("pool conn", read(conn))
	check("conn", read(conn.Conn()))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		check("tx", read(tx))
		return nil
	})
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}

	// A failing statement is an error, not an empty read.
	err = copyOut(ctx, pool, "COPY (SELECT 1/0) TO STDOUT (FORMAT binary)", func([][]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("failing COPY: %v", err)
	}
	// A row the caller refuses stops the read with the caller's error.
	err = copyOut(ctx, pool, "COPY ("+sel+") TO STDOUT (FORMAT binary)", func([][]byte) error { return context.Canceled })
	if err == nil {
		t.Error("a refused row did not stop the read")
	}
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("the pool after a refused read: %v", err)
	}
}

func TestBlocksKeepOrderAcrossBlocks(t *testing.T) {
	var b Blocks[int]
	const n = 3*maxBlock + 17
	for i := range n {
		b.Append(i * 3)
	}
	if b.Len() != n {
		t.Fatalf("Len %d, want %d", b.Len(), n)
	}
	next := 0
	for i, v := range b.All() {
		if i != next || v != i*3 {
			t.Fatalf("value %d at %d, want %d at %d", v, i, next*3, next)
		}
		next++
	}
	if next != n {
		t.Fatalf("All yielded %d values, want %d", next, n)
	}
	for i := range b.All() {
		if i == 5 {
			break // stopping early must not panic
		}
	}
	for k, blk := range b.blocks {
		if cap(blk) > maxBlock || (k > 0 && cap(blk) < cap(b.blocks[k-1])) {
			t.Fatalf("block %d holds %d (previous %d, bound %d)", k, cap(blk), cap(b.blocks[max(k-1, 0)]), maxBlock)
		}
	}
}
