package hourcache

import "time"

// CountingDB counts the statements sent through it (for the package's external tests).
type CountingDB = countingDB

// Queries is how many statements were sent.
func (c *countingDB) Queries() int64 { return c.queries.Load() }

// LiveHeld reports the hour being written held whole, and its version.
func (c *Cache) LiveHeld() (at time.Time, version int64, ok bool) {
	l := c.wholeLive.Load()
	if l == nil {
		return time.Time{}, 0, false
	}
	return l.at, l.version, true
}
