package query

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bulk reads (whole hours of rollups for the cache) come as COPY ... TO STDOUT in binary:
// Postgres sends each value as it stores it (a float as its 8 bytes, not as shortest
// decimal text), and the rows are decoded as they arrive, without a string per id or a value
// per column.

// copyOut runs sql, a COPY (...) TO STDOUT (FORMAT binary), on db and calls row with the
// fields of each row as it arrives; the fields are only valid during the call.
func copyOut(ctx context.Context, db DBTX, sql string, row func(fields [][]byte) error) error {
	d := &copyDecoder{row: row}
	var err error
	switch c := db.(type) {
	case interface{ PgConn() *pgconn.PgConn }: // *pgx.Conn
		_, err = c.PgConn().CopyTo(ctx, d, sql)
	case interface{ Conn() *pgx.Conn }: // pgx.Tx, *pgxpool.Conn
		_, err = c.Conn().PgConn().CopyTo(ctx, d, sql)
	case interface {
		AcquireFunc(context.Context, func(*pgxpool.Conn) error) error
	}: // *pgxpool.Pool, and what embeds one
		err = c.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
			_, err := c.Conn().PgConn().CopyTo(ctx, d, sql)
			return err
		})
	default:
		return fmt.Errorf("copy out: %T cannot stream COPY", db)
	}
	if err != nil {
		return err
	}
	if !d.ended {
		return errors.New("copy out: the data ended without its trailer")
	}
	return nil
}

// copySignature starts every binary COPY stream.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyDecoder is an io.Writer that decodes a binary COPY stream as it is written: a header,
// then rows (a 16-bit field count, then each field as a 32-bit length and its bytes; -1 for
// NULL), then a trailer (a field count of -1).
type copyDecoder struct {
	row    func(fields [][]byte) error
	fields [][]byte
	rest   []byte // the start of a row not yet complete
	header bool
	ended  bool
}

var _ io.Writer = (*copyDecoder)(nil)

func (d *copyDecoder) Write(p []byte) (int, error) {
	data := p
	if len(d.rest) > 0 {
		d.rest = append(d.rest, p...)
		data = d.rest
	}
	used, err := d.decode(data)
	if err != nil {
		return 0, err
	}
	// Keep what is left for the next write (data may be d.rest itself: copy down).
	d.rest = append(d.rest[:0], data[used:]...)
	return len(p), nil
}

// decode decodes the complete parts of data and returns how many bytes they took.
func (d *copyDecoder) decode(data []byte) (int, error) {
	off := 0
	if !d.header {
		const fixed = 11 + 4 + 4 // signature, flags, extension length
		if len(data) < fixed {
			return 0, nil
		}
		if !bytes.Equal(data[:11], copySignature) {
			return 0, errors.New("copy out: not a binary COPY stream")
		}
		ext := int(binary.BigEndian.Uint32(data[15:19]))
		if len(data) < fixed+ext {
			return 0, nil
		}
		off = fixed + ext
		d.header = true
	}
	for off < len(data) {
		if d.ended {
			return 0, errors.New("copy out: data after the trailer")
		}
		if len(data)-off < 2 {
			return off, nil
		}
		n := int(int16(binary.BigEndian.Uint16(data[off:])))
		if n == -1 {
			d.ended = true
			off += 2
			continue
		}
		d.fields = d.fields[:0]
		p := off + 2
		complete := true
		for range n {
			if len(data)-p < 4 {
				complete = false
				break
			}
			l := int(int32(binary.BigEndian.Uint32(data[p:])))
			p += 4
			if l < 0 {
				d.fields = append(d.fields, nil)
				continue
			}
			if len(data)-p < l {
				complete = false
				break
			}
			d.fields = append(d.fields, data[p:p+l:p+l])
			p += l
		}
		if !complete {
			return off, nil
		}
		if err := d.row(d.fields); err != nil {
			return 0, err
		}
		off = p
	}
	return off, nil
}

// Binary values of the types the bulk reads use.

func copyInt32(b []byte) (int32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("copy out: int4 of %d bytes", len(b))
	}
	return int32(binary.BigEndian.Uint32(b)), nil
}

func copyInt64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("copy out: int8 of %d bytes", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func copyFloat64(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("copy out: float8 of %d bytes", len(b))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

// postgresEpoch is where timestamptz values count their microseconds from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func copyTime(b []byte) (time.Time, error) {
	us, err := copyInt64(b)
	if err != nil {
		return time.Time{}, err
	}
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, errors.New("copy out: infinite timestamp")
	}
	return postgresEpoch.Add(time.Duration(us) * time.Microsecond), nil
}

// COPY takes no parameters: the values the bulk reads need are written into the statement
// as literals. They are only ever times and integers formatted here.

func timeLiteral(t time.Time) string {
	return "'" + t.UTC().Format(time.RFC3339Nano) + "'::timestamptz"
}

func timeArrayLiteral(ts []time.Time) string {
	var b strings.Builder
	b.WriteString("'{")
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString("}'::timestamptz[]")
	return b.String()
}

func int64ArrayLiteral(vs []int64) string {
	var b strings.Builder
	b.WriteString("'{")
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(v, 10))
	}
	b.WriteString("}'::int8[]")
	return b.String()
}
