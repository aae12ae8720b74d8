package devstack

import (
	"strings"
	"testing"
	"time"
)

func TestADataFolderKeepsItsShardCountAndNeverShrinks(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		shards int
		held   int
		save   int // recorded by a growth before the next start; 0: none
		refuse string
	}{
		{name: "a new folder holds 2 by default", shards: 0, held: 2},
		{name: "a restart without --shards keeps them", shards: 0, held: 2},
		{name: "a restart with the same count", shards: 2, held: 2},
		{name: "more is a growth from what the folder holds", shards: 3, held: 2, save: 3},
		{name: "after the growth the folder holds 3", shards: 0, held: 3},
		{name: "fewer is refused", shards: 2, refuse: "--shards 3 or more"},
	} {
		held, err := checkTopology(Config{DataDir: dir, Shards: c.shards})
		switch {
		case c.refuse != "":
			if err == nil || !strings.Contains(err.Error(), c.refuse) {
				t.Fatalf("%s: %d, %v; want an error naming %q", c.name, held, err, c.refuse)
			}
		case err != nil || held != c.held:
			t.Fatalf("%s: %d, %v; want %d", c.name, held, err, c.held)
		}
		if c.save != 0 {
			if err := saveTopology(dir, c.save); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.DataDir != ".fleetingest" || c.Shards != 0 || c.Lead != 5*time.Second || c.HTTPAddr != "127.0.0.1:8080" || c.Namespace != "dev" || c.Fleet != "local" || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
}
