// Package placement is the one definition of where a device's data lives: device-id
// grammar, placement key → slot → shard, and the slot map every plane shares, versioned over
// time by ShardMap (placement by key and reading time; its doc gives the JSON form). It does
// no I/O.
package placement

import (
	"github.com/cespare/xxhash/v2"
)

// Slots is the fixed number of hash slots. Shards own contiguous slot ranges; changing the
// number of shards moves slots (resharding), it never rehashes keys.
const Slots = 4096

// MaxDeviceIDLen is the longest device id accepted.
const MaxDeviceIDLen = 64

// Slot returns the slot of a placement key: xxhash64(key) mod Slots.
func Slot(key string) int {
	return int(xxhash.Sum64String(key) % Slots)
}

// ValidDeviceID reports whether id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$, the grammar
// every device id must have: ids are used in KV keys, subjects and SQL.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > MaxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}
