package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/internal/localpg"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { Main(m, &cluster) }

func TestNewDatabaseGivesEachTestItsOwnDatabase(t *testing.T) {
	var names []string
	for _, sub := range []string{"first", "second"} {
		t.Run(sub, func(t *testing.T) {
			conn, err := pgx.Connect(t.Context(), NewDatabase(t, cluster))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := conn.Close(context.Background()); err != nil {
					t.Error(err)
				}
			})
			var name string
			var tables int
			if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'mine'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("database %s already holds another test's table", name)
			}
			if _, err := conn.Exec(t.Context(), "CREATE TABLE mine (v int)"); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v, want two distinct", names)
	}
	conn, err := pgx.Connect(t.Context(), cluster.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	var left int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d test databases left after their tests ended", left)
	}
}

func TestStartGivesATestItsOwnCluster(t *testing.T) {
	c := Start(t)
	if c.Port() == cluster.Port() {
		t.Fatalf("own cluster shares the shared cluster's port %d", c.Port())
	}
	conn, err := pgx.Connect(t.Context(), NewDatabase(t, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	var one int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}
