package devstack

import (
	"strings"
	"testing"
)

func TestADataFolderKeepsItsShardCount(t *testing.T) {
	dir := t.TempDir()
	if err := checkTopology(Config{DataDir: dir, Shards: 2}); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if err := checkTopology(Config{DataDir: dir, Shards: 2}); err != nil {
		t.Fatalf("restart with the same shard count: %v", err)
	}
	err := checkTopology(Config{DataDir: dir, Shards: 3})
	if err == nil || !strings.Contains(err.Error(), "--shards 2") {
		t.Errorf("restart with another shard count = %v, want an error naming --shards 2", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.DataDir != ".fleetingest" || c.Shards != 2 || c.HTTPAddr != "127.0.0.1:8080" || c.Namespace != "dev" || c.Fleet != "local" || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
}
